"""The corpus of bad inputs in tests/data/bad/: every file is fed to the loader a user would reach it through, and
must fail with a clear message naming what is at fault (file, line, field). tests/data/bad/cases.yaml lists them."""

import os
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from tests.conftest import REPO

BAD = Path(__file__).parents[1] / "data" / "bad"
CASES = yaml.safe_load((BAD / "cases.yaml").read_text())
OVERRIDES = yaml.safe_load((BAD / "overrides.yaml").read_text())


def test_every_bad_file_has_a_case():
    assert sorted(p.name for p in BAD.iterdir() if p.name != "cases.yaml") == sorted(CASES)


def feed(kind: str, path: Path) -> None:
    if kind == "preferences":
        from trl_ext.data import load_preferences

        load_preferences(str(path))
    elif kind == "tokenizer":
        from trl_ext.models import load_tokenizer

        load_tokenizer(str(path))
    elif kind == "constitution":
        from trl_ext.rlaif import Constitution

        Constitution.load(path)
    else:
        raise AssertionError(f"unknown case kind {kind}")


@pytest.mark.parametrize("name", [n for n, case in CASES.items() if case["as"] != "overrides"])
def test_bad_file_gives_a_clear_error(name):
    with pytest.raises(Exception) as caught:  # the message is what matters: each loader has its own error type
        feed(CASES[name]["as"], BAD / name)
    assert CASES[name]["message"] in str(caught.value)


@pytest.mark.parametrize("case", OVERRIDES, ids=[" ".join(c["overrides"]) for c in OVERRIDES])
def test_bad_override_gives_a_clear_error(case, tmp_path, tiny_path, tiny_tokenizer):
    from datasets import Dataset

    from trl_ext._compat import DPOConfig
    from trl_ext.config import trainer_config
    from trl_ext.dpo import LeanDPOTrainer
    from trl_ext.models import load_policy

    with pytest.raises((HydraException, OmegaConfBaseException, ValueError)) as caught:
        with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
            cfg = compose(case["config"], overrides=["model=tiny", *case["overrides"]])
        args = trainer_config(DPOConfig, cfg.trainer, tmp_path)
        pair = {"prompt": "Hi", "chosen": "Hello! How can I help?", "rejected": "What."}
        LeanDPOTrainer(
            model=load_policy(tiny_path, tiny_tokenizer),
            args=args,
            train_dataset=Dataset.from_list([pair]),
            processing_class=tiny_tokenizer,
            rdpo_alpha=cfg.rdpo_alpha,
        )
    assert case["message"] in str(caught.value)


@pytest.mark.parametrize(("code", "words"), [(28, "the disk is full"), (13, "permission denied")])
def test_full_disk_or_permission_error_names_the_path(code, words, capsys):
    from trl_ext.cli import report_user_errors

    @report_user_errors
    def main():
        raise OSError(code, os.strerror(code), "/runs/dpo.partial/model.safetensors")

    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"cannot write /runs/dpo.partial/model.safetensors: {words}" in err


def test_weights_load_from_safetensors_only_and_remote_code_only_on_request(tmp_path, tiny_path, tiny_tokenizer):
    from trl_ext.models import load_policy

    model = load_policy(tiny_path, tiny_tokenizer)
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # a pickle checkpoint, no safetensors
    with pytest.raises(OSError, match="safetensors"):
        load_policy(str(tmp_path), tiny_tokenizer)
    for node in (REPO / "conf" / "model").glob("*.yaml"):
        assert yaml.safe_load(node.read_text())["trust_remote_code"] is False, node.name
