"""The recipes as users run them (subprocesses, `python` and `accelerate launch`): outputs `from_pretrained` loads,
skipping and refusing on rerun, errors reported in one line. Stage logic runs in process in tests/stages/."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from tests.conftest import REPO, recipe, run_cmd
from trl_ext.stages.evaluation import log_history

FEW = ["+debug=default"]  # conf/debug/default.yaml: the tiny model, two steps
PIPELINE_FEW = ["+debug=default", "dpo.trainer.max_steps=3"]


def test_sft_recipe(tmp_path):
    recipe("sft", *FEW, f"hydra.run.dir={tmp_path}")
    AutoModelForCausalLM.from_pretrained(tmp_path / "sft")
    manifest = json.loads((tmp_path / "sft" / "stage.json").read_text())
    assert manifest["config"]["trainer"]["max_steps"] == 2 and manifest["metrics"]["train_loss"] > 0


@pytest.mark.parametrize(
    "stage, extra, loader",
    [
        ("sft", [], AutoModelForCausalLM),
        ("reward", ["peft=none"], AutoModelForSequenceClassification),
        ("dpo", ["trainer.loss_type=[ipo]"], AutoModelForCausalLM),
    ],
)
def test_recipes_under_accelerate_launch(tmp_path, stage, extra, loader):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    config = ["--config_file", "conf/accelerate/cpu.yaml"]
    run_cmd([accelerate, "launch", *config, f"recipes/{stage}.py", *FEW, *extra, f"hydra.run.dir={tmp_path}"])
    model = loader.from_pretrained(tmp_path / stage)
    assert stage != "reward" or model.config.num_labels == 1
    manifest = json.loads((tmp_path / stage / "stage.json").read_text())
    assert stage != "dpo" or manifest["config"]["trainer"]["loss_type"] == ["ipo"]


def test_pipeline_skips_complete_stages_and_refuses_changed_config(tmp_path):
    recipe("pipeline", *PIPELINE_FEW, f"hydra.run.dir={tmp_path}")
    report = (tmp_path / "report.md").read_text()
    assert "| sft |" in report and "| dpo |" in report and (tmp_path / "training_curves.png").exists()
    assert "## Length diagnostics" in report and (tmp_path / "lengths.png").exists()
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
    assert changed.returncode == 2 and "trainer.beta: 0.1 -> 0.5" in changed.stderr and "+force=true" in changed.stderr

    recipe("pipeline", *PIPELINE_FEW, "dpo.trainer.beta=0.5", "+force=true", f"hydra.run.dir={tmp_path}")
    assert json.loads((tmp_path / "dpo" / "stage.json").read_text())["config"]["trainer"]["beta"] == 0.5


def test_eval_recipe_on_saved_models(tmp_path):
    recipe("sft", *FEW, f"hydra.run.dir={tmp_path}")
    recipe("eval", *FEW, f"+models.mine={tmp_path / 'sft'}", f"hydra.run.dir={tmp_path / 'eval'}")
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "| mine |" in report and "| mine |" in report.split("## Behaviour scorecard")[1]
    assert "mine" in json.loads((tmp_path / "eval" / "scorecard.json").read_text())["arms"]


def test_bad_data_fails_before_training_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "chosen": "", "rejected": "no"}\n{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    proc = subprocess.run(
        [sys.executable, "recipes/dpo.py", *FEW, "data=local", f"data.path={bad}", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
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
    assert proc.returncode != 0 and "betta" in proc.stderr and "Traceback" not in proc.stderr


def test_bon_recipe_two_processes_keep_prompt_order(tmp_path, tiny_path, tiny_tokenizer):
    from trl_ext.data import load_prompts
    from trl_ext.models import load_reward_model

    load_reward_model(tiny_path, tiny_tokenizer).save_pretrained(tmp_path / "rm")
    tiny_tokenizer.save_pretrained(tmp_path / "rm")
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    run_cmd(
        [
            accelerate,
            "launch",
            "--cpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "recipes/bon.py",
            "model=tiny",
            f"reward_model={tmp_path / 'rm'}",
            "max_prompts=7",
            "sampling.n=3",
            "sampling.generation.max_new_tokens=4",
            f"hydra.run.dir={tmp_path / 'run'}",
        ]
    )
    best = [json.loads(line) for line in (tmp_path / "run" / "bon" / "best.jsonl").read_text().splitlines()]
    expected = list(load_prompts("demo", eval_size=0.15, seed=42)[0]["train"]["prompt"])[:7]
    assert [row["prompt"] for row in best] == expected
    assert all(len(row["scores"]) == 3 and row["best_score"] == max(row["scores"]) for row in best)


def test_ppo_recipe_reports_to_tensorboard_and_evaluates_at_eval_steps(tmp_path):
    recipe("reward", *FEW, "peft=none", f"hydra.run.dir={tmp_path / 'rm'}")
    recipe(  # the commands of issue #16's acceptance, in one run
        "ppo",
        "model=tiny",
        f"reward_model={tmp_path / 'rm' / 'reward'}",
        "trainer.max_steps=4",
        "trainer.report_to=[tensorboard]",
        "+trainer.eval_strategy=steps",
        "+trainer.eval_steps=2",
        f"hydra.run.dir={tmp_path / 'ppo'}",
    )
    assert list((tmp_path / "ppo").rglob("events.out.tfevents.*")), "no TensorBoard event file in the run folder"
    history = log_history(tmp_path / "ppo" / "ppo")
    evals = [h["step"] for h in history if "eval_objective/scores" in h]
    assert evals[:2] == [2, 4] and [h["step"] for h in history if "objective/scores" in h] == [1, 2, 3, 4]
    assert "eval_objective/scores" in json.loads((tmp_path / "ppo" / "ppo" / "metrics.json").read_text())
