"""Reliability, for real: kill -9 a pipeline during its DPO stage and again during its PPO stage, rerun the same
command each time, and compare everything with an uninterrupted run of the same config and seed (reproducible SFT
and reward-model metrics; resumed DPO and PPO weights equal to uninterrupted ones). A forced NaN stops a run with
its last good checkpoint intact."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import DEBUG_PROMPTS, REPO, recipe
from trl_ext.stages.evaluation import log_history

STAGES = ["sft", "reward", "dpo", "ppo"]
PIPELINE = [
    "pipeline=sft_rm_ppo",
    f"pipeline.stages=[{','.join(STAGES)}]",
    "model=tiny",
    "peft=none",
    "sft.trainer.max_steps=2",
    "reward.trainer.max_steps=2",
    "dpo.trainer.max_steps=6",
    "dpo.trainer.save_steps=2",
    "dpo.trainer.per_device_train_batch_size=2",
    "ppo.trainer.max_steps=6",
    "ppo.trainer.save_steps=2",
    "evaluation.n_generate=1",
    f"scorecard.prompts={DEBUG_PROMPTS}",
]


def is_timing(key: str) -> bool:
    """Wall-clock figures, and bookkeeping that a resumed process restarts: TRL's running token counter
    (`num_tokens`) and the Trainer's `train_loss` (the mean over the steps this process ran)."""
    return key.endswith(("_runtime", "_per_second", "num_tokens", "train_loss")) or key.startswith("time/")


def kill_when_checkpointed(args: list[str], work: Path, timeout: float = 300) -> None:
    """Start a recipe, SIGKILL it as soon as `work` holds a complete checkpoint (its state file written)."""
    proc = subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if any(work.glob("checkpoint-*/trainer_state.json")):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"not killed mid-stage ({proc.returncode}): {proc.stderr.read()[-3000:]}"


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def history(folder: Path) -> list[dict]:
    return [{k: v for k, v in entry.items() if not is_timing(k)} for entry in log_history(folder)]


@pytest.mark.slow
def test_kill_and_resume_dpo_and_ppo_match_an_uninterrupted_run(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    recipe("pipeline", *PIPELINE, f"hydra.run.dir={straight}")

    command = [sys.executable, "recipes/pipeline.py", *PIPELINE, f"hydra.run.dir={killed}"]
    kill_when_checkpointed(command, killed / "dpo.work")  # SFT and reward model done, DPO cut short
    assert (killed / "reward").is_dir() and not (killed / "dpo").exists()
    kill_when_checkpointed(command, killed / "ppo.work")  # DPO resumed and finished, PPO cut short
    assert (killed / "dpo").is_dir() and not (killed / "ppo").exists()
    recipe("pipeline", *PIPELINE, f"hydra.run.dir={killed}")

    for stage in STAGES:  # same config and seed: the same numbers, step by step, resumed or not
        assert history(killed / stage) == history(straight / stage), stage
    for stage in ("dpo", "ppo"):  # resumed after kill -9: the same weights as the uninterrupted run
        a, b = weights(straight / stage), weights(killed / stage)
        assert a.keys() == b.keys()
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=f"{stage}: {name}")
    assert [h["step"] for h in history(killed / "ppo") if "objective/kl" in h] == list(range(1, 7))  # one per update


def test_forced_nan_stops_with_the_last_good_checkpoint(tmp_path):
    args = ["model=tiny", "peft=none", "trainer.max_steps=8", "trainer.save_steps=2", "trainer.eval_strategy=no"]
    args += ["trainer.per_device_train_batch_size=2", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.run(
        [sys.executable, "recipes/dpo.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "TRL_EXT_NAN_AT_STEP": "5"},
    )
    work = tmp_path / "dpo.work"
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "non-finite gradient norm (nan) at step 5" in proc.stderr and f"{work / 'checkpoint-4'}" in proc.stderr
    assert not (tmp_path / "dpo").exists() and not (work / "checkpoint-6").exists()
    saved = weights(work / "checkpoint-4")
    assert all(torch.isfinite(t).all() for t in saved.values())

    recipe("dpo", *args)  # the same command without the fault resumes from checkpoint-4 and finishes
    assert log_history(tmp_path / "dpo")[-1]["step"] == 8
