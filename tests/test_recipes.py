"""Each recipe end to end on model=tiny for a few steps, as users run them (subprocesses)."""

import json
import shutil
import subprocess
import sys

import pytest
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from tests.conftest import HH_FILE, REPO, needs_hh, recipe, run_cmd

FEW = ["model=tiny", "trainer.max_steps=2", "trainer.eval_strategy=no"]
PIPELINE_FEW = ["model=tiny", "sft.trainer.max_steps=2", "dpo.trainer.max_steps=3", "reward.trainer.max_steps=2"]


def test_sft_recipe(tmp_path):
    recipe("sft", *FEW, f"hydra.run.dir={tmp_path}")
    AutoModelForCausalLM.from_pretrained(tmp_path / "sft")
    manifest = json.loads((tmp_path / "sft" / "stage.json").read_text())
    assert manifest["config"]["trainer"]["max_steps"] == 2 and manifest["metrics"]["train_loss"] > 0


def test_reward_recipe_full_finetune(tmp_path):
    recipe("reward", *FEW, "peft=none", f"hydra.run.dir={tmp_path}")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "reward")
    assert model.config.num_labels == 1


def test_dpo_recipe_under_accelerate_launch(tmp_path):
    accelerate = shutil.which("accelerate", path=str(REPO / ".venv" / "bin")) or shutil.which("accelerate")
    run_cmd(
        [
            accelerate,
            "launch",
            "--config_file",
            "conf/accelerate/cpu.yaml",
            "recipes/dpo.py",
            *FEW,
            "trainer.loss_type=[ipo]",
            f"hydra.run.dir={tmp_path}",
        ]
    )
    AutoModelForCausalLM.from_pretrained(tmp_path / "dpo")
    assert json.loads((tmp_path / "dpo" / "stage.json").read_text())["config"]["trainer"]["loss_type"] == ["ipo"]


def test_pipeline_skips_complete_stages_and_refuses_changed_config(tmp_path):
    recipe("pipeline", *PIPELINE_FEW, f"hydra.run.dir={tmp_path}")
    report = (tmp_path / "report.md").read_text()
    assert "| sft |" in report and "| dpo |" in report and (tmp_path / "training_curves.png").exists()
    metrics = json.loads((tmp_path / "metrics.json").read_text())["models"]
    assert {"implicit_accuracy", "kl_proxy", "gen_length"} <= set(metrics["dpo"])
    stamp = (tmp_path / "dpo" / "stage.json").stat().st_mtime

    rerun = recipe("pipeline", *PIPELINE_FEW, f"hydra.run.dir={tmp_path}")
    assert "already complete" in rerun.stderr + rerun.stdout
    assert (tmp_path / "dpo" / "stage.json").stat().st_mtime == stamp

    changed = subprocess.run(
        [sys.executable, "recipes/pipeline.py", *PIPELINE_FEW, "dpo.trainer.beta=0.5", f"hydra.run.dir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert changed.returncode != 0 and "trainer.beta: 0.1 -> 0.5" in changed.stderr and "+force=true" in changed.stderr

    recipe("pipeline", *PIPELINE_FEW, "dpo.trainer.beta=0.5", "+force=true", f"hydra.run.dir={tmp_path}")
    assert json.loads((tmp_path / "dpo" / "stage.json").read_text())["config"]["trainer"]["beta"] == 0.5


def test_eval_recipe_on_saved_models(tmp_path):
    recipe("sft", *FEW, f"hydra.run.dir={tmp_path}")
    recipe(
        "eval",
        "model=tiny",
        f"+models.sft={tmp_path / 'sft'}",
        "evaluation.n_generate=2",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    assert "| sft |" in (tmp_path / "eval" / "report.md").read_text()


@needs_hh
def test_pipeline_on_shared_hh_rlhf(tmp_path):
    recipe(
        "pipeline",
        *PIPELINE_FEW,
        "data=hh_rlhf",
        f"data.path={HH_FILE}",
        "data.max_rows=60",
        f"hydra.run.dir={tmp_path}",
    )
    report = (tmp_path / "report.md").read_text()
    assert "60 rows" in report and "| dpo |" in report


def test_bad_data_fails_before_training_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "chosen": "", "rejected": "no"}\n{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    proc = subprocess.run(
        [sys.executable, "recipes/dpo.py", *FEW, "data=local", f"data.path={bad}", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert f"{bad}:line 1: chosen response is empty" in proc.stderr
    assert not (tmp_path / "run" / "dpo").exists()


@pytest.mark.parametrize("stage", ["dpo"])
def test_config_typo_is_reported(tmp_path, stage):
    proc = subprocess.run(
        [sys.executable, f"recipes/{stage}.py", "model=tiny", "trainer.betta=0.2"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "betta" in proc.stderr
