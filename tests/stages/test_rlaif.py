"""The RLAIF stage in process: the judge is audited only on human pairs; a bad constitution fails before any model
loads."""

import json
import logging

import pytest

from tests.conftest import REPO, compose
from trl_ext.rlaif import ConstitutionalLabeler, ConstitutionError
from trl_ext.stages import rlaif

DEFAULT = REPO / "conf" / "constitution" / "default.yaml"


@pytest.fixture
def labeler(tiny_model, tiny_tokenizer):
    return ConstitutionalLabeler(tiny_model, DEFAULT, tiny_tokenizer, batch_size=4, progress=False)


def test_recipe_audits_the_judge_only_on_human_pairs(tmp_path, labeler, caplog):
    prompts_only = tmp_path / "prompts.jsonl"
    prompts_only.write_text("".join(json.dumps({"prompt": f"Question {i}?"}) + "\n" for i in range(6)))
    cfg = compose("rlaif", "model=tiny", "data=local", f"data.path={prompts_only}")
    with caplog.at_level(logging.WARNING):
        assert rlaif.audit(cfg, labeler) is None
    assert "Judge not audited: the data has no usable human preference pairs" in caplog.text
    assert rlaif.audit(compose("rlaif", "model=tiny", "audit_pairs=0"), labeler) is None
    audit = rlaif.audit(compose("rlaif", "model=tiny", "audit_pairs=5"), labeler)
    assert audit["pairs"] == 5 and audit["judge"] == labeler.name and len(audit["calibration"]) == 4


def test_recipe_fails_on_a_bad_constitution_before_loading_models(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("principles: [unclosed\n")
    with pytest.raises(ConstitutionError, match=f"{bad}: not valid YAML"):  # a user error: exit 2, no traceback
        rlaif.run(compose("rlaif", "model=tiny", f"constitution.path={bad}"), tmp_path)
    assert not (tmp_path / "rlaif").exists()
