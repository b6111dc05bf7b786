"""Stage outputs: published atomically, skipped when complete, refused when made by another config."""

import pytest
from omegaconf import OmegaConf

from trl_ext.stages import Stage, StageConfigMismatch
from trl_ext.utils.io import atomic_dir


def test_publish_then_skip(tmp_path):
    cfg = OmegaConf.create({"trainer": {"beta": 0.1}})
    stage = Stage(tmp_path, "dpo", cfg)
    assert not stage.is_complete
    with stage.publish({"loss": 0.5}) as out:
        (out / "weights").write_text("w")
        assert not stage.output.exists()  # invisible until complete
    assert (stage.output / "weights").exists() and (stage.output / "config.yaml").exists()
    assert Stage(tmp_path, "dpo", cfg).is_complete


def test_failed_stage_leaves_no_output(tmp_path):
    stage = Stage(tmp_path, "sft", OmegaConf.create({"a": 1}))
    with pytest.raises(RuntimeError), stage.publish() as out:
        (out / "half").write_text("x")
        raise RuntimeError("crash while saving")
    assert not stage.output.exists() and not stage.partial.exists()


def test_other_config_is_refused_unless_forced(tmp_path):
    with Stage(tmp_path, "dpo", OmegaConf.create({"trainer": {"beta": 0.1}})).publish():
        pass
    changed = OmegaConf.create({"trainer": {"beta": 0.2}})
    with pytest.raises(StageConfigMismatch, match=r"trainer.beta: 0.1 -> 0.2.*\+force=true"):
        assert Stage(tmp_path, "dpo", changed).is_complete
    forced = Stage(tmp_path, "dpo", changed, force=True)
    assert not forced.is_complete
    with forced.publish():
        pass
    assert Stage(tmp_path, "dpo", changed).is_complete


def test_atomic_dir(tmp_path):
    with atomic_dir(tmp_path / "model") as tmp:
        (tmp / "f").write_text("1")
    assert (tmp_path / "model" / "f").read_text() == "1"
    with pytest.raises(ValueError), atomic_dir(tmp_path / "other"):
        raise ValueError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_resume_passes_over_a_checkpoint_cut_short(tmp_path):
    stage = Stage(tmp_path, "dpo", OmegaConf.create({"a": 1}))
    assert stage.last_checkpoint() is None
    for step, marker in ((2, "trainer_state.json"), (10, "other_state.json"), (12, None)):  # 12: killed mid-save
        folder = stage.work / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if marker:
            (folder / marker).write_text("{}")
    assert stage.last_checkpoint() == str(stage.work / "checkpoint-2")  # transformers' marker by default
    assert stage.last_checkpoint("other_state.json") == str(stage.work / "checkpoint-10")  # a trainer's own marker
