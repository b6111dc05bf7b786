"""Recipes under `accelerate launch` with two processes and DeepSpeed ZeRO-3 on CPU (conf/accelerate/zero3_cpu.yaml).

Each run must finish with one run folder, written once (.hydra/, the log, the stage), a model `from_pretrained`
loads, and the losses of the single-process run at the same global batch size (2 x 2 against 1 x 4). Compared runs
use fp32 (DeepSpeed would keep bf16 weights where single-process training autocasts) and a constant learning rate
without warm-up, so that step 2 also checks step 1's update, gradients reduced across the two processes.
"""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from tests.conftest import REPO, run_cmd
from trl_ext.stages.evaluation import log_history

ZERO3 = "conf/accelerate/zero3_cpu.yaml"
COMPARABLE = [
    "model=tiny",
    "trainer.max_steps=2",
    "trainer.bf16=false",
    "trainer.lr_scheduler_type=constant",
    "trainer.learning_rate=1e-3",
    "data.max_rows=64",
]
NO_EVAL = ["trainer.warmup_steps=0", "trainer.eval_strategy=no", "trainer.save_strategy=no"]
# the default run folder's pattern (conf/base.yaml), under the test's folder: every rank resolves it by itself
RUN_DIR = "outputs/${hydra.job.name}/${model.name}_${data.name}"


def accelerate_cmd(*args: str) -> list[str]:
    exe = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    return [exe, "launch", "--config_file", ZERO3, "--num_processes", "2", *args]


def run_pair(tmp_path: Path, recipe: str, *overrides: str) -> dict[str, Path]:
    """The recipe alone with a batch of 4, then on two ZeRO-3 processes with 2 each; their base folders."""
    runs = {}
    for name, batch, launcher in (("single", 4, [sys.executable]), ("zero3", 2, accelerate_cmd())):
        runs[name] = base = tmp_path / name
        batch_size = f"trainer.per_device_train_batch_size={batch}"
        run_cmd([*launcher, f"recipes/{recipe}.py", *overrides, batch_size, f"hydra.run.dir={base}/{RUN_DIR}"])
    return runs


def history(run_dir: Path, stage: str, key: str = "loss") -> list[dict]:
    """The stage's per-step log entries (those with `key`)."""
    return [h for h in log_history(run_dir / stage) if key in h]


def assert_one_run_folder(base: Path, recipe: str, stage: str) -> Path:
    """Exactly one run folder, holding the stage, its work folder, one log and one .hydra/."""
    folders = [p for p in (base / "outputs").rglob("*") if p.is_dir() and (p / ".hydra").is_dir()]
    assert folders == [base / "outputs" / recipe / "tiny_demo"], folders
    run_dir = folders[0]
    assert sorted(p.name for p in run_dir.iterdir()) == sorted([".hydra", stage, f"{stage}.work", f"{recipe}.log"])
    assert sorted(p.name for p in (run_dir / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]
    assert not list(run_dir.glob(f".{stage}.partial"))
    return run_dir


def close(a: float, b: float, rel: float = 1e-5, abs_: float = 1e-6) -> bool:
    """Equal up to float32 reduction order (measured: ~1e-6 relative); step 1's update changes step 2's DPO loss by
    ~5e-4 relative, so a missing or wrongly averaged update fails."""
    return abs(a - b) <= max(rel * max(abs(a), abs(b)), abs_)


def test_dpo_zero3_two_processes_match_one(tmp_path):
    runs = run_pair(tmp_path, "dpo", *COMPARABLE, *NO_EVAL)
    run_dir = assert_one_run_folder(runs["zero3"], "dpo", "dpo")
    AutoModelForCausalLM.from_pretrained(run_dir / "dpo")
    single, zero3 = (history(runs[k] / "outputs/dpo/tiny_demo", "dpo") for k in ("single", "zero3"))
    assert [h["step"] for h in zero3] == [1, 2]
    for a, b in zip(single, zero3):  # step 1: policy = reference, loss ln 2; its gradient norm checks the reduction
        assert close(a["loss"], b["loss"]) and close(a["grad_norm"], b["grad_norm"]), (a, b)
        assert close(a["logps/chosen"], b["logps/chosen"]) and close(
            a["rewards/margins"], b["rewards/margins"], abs_=1e-5
        )
    assert zero3[1]["loss"] < math.log(2) - 1e-4  # step 1's update moved the policy
    # the chunked head reads the LM head's weight outside a module call: under ZeRO-3 TRL's head serves instead
    assert "sharded (ZeRO-3 or FSDP)" in (run_dir / "dpo.log").read_text()


def test_reward_zero3_two_processes_match_one(tmp_path):
    runs = run_pair(tmp_path, "reward", *COMPARABLE, *NO_EVAL)
    run_dir = assert_one_run_folder(runs["zero3"], "reward", "reward")
    assert AutoModelForSequenceClassification.from_pretrained(run_dir / "reward").config.num_labels == 1
    single, zero3 = (history(runs[k] / "outputs/reward/tiny_demo", "reward") for k in ("single", "zero3"))
    assert [h["step"] for h in zero3] == [1, 2]
    for a, b in zip(single, zero3):
        assert close(a["loss"], b["loss"]) and close(a["grad_norm"], b["grad_norm"]), (a, b)


@pytest.fixture(scope="module")
def reward_folder(tmp_path_factory, tiny_path, tiny_tokenizer):
    """A tiny reward model (random score head: scores that vary, no training needed)."""
    from trl_ext.models import load_reward_model

    folder = tmp_path_factory.mktemp("rm")
    load_reward_model(tiny_path, tiny_tokenizer).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def test_ppo_zero3_two_processes_match_one(tmp_path, reward_folder):
    # Near-greedy sampling (temperature 1e-3) makes the rollouts independent of how prompts are spread over processes;
    # peft=none gives a separate reference and reward model, each sharded by TRL's prepare_deepspeed.
    runs = run_pair(
        tmp_path,
        "ppo",
        *COMPARABLE,
        "peft=none",
        f"reward_model={reward_folder}",
        "trainer.response_length=8",
        "trainer.temperature=0.001",
        "trainer.save_steps=0",
    )
    run_dir = assert_one_run_folder(runs["zero3"], "ppo", "ppo")
    AutoModelForCausalLM.from_pretrained(run_dir / "ppo")
    log = (run_dir / "ppo.log").read_text()
    assert log.count("PPO: DistributedType.DEEPSPEED, 2 process(es)") == 1  # really ZeRO, logged by one rank
    single, zero3 = (history(runs[k] / "outputs/ppo/tiny_demo", "ppo", "loss/value") for k in ("single", "zero3"))
    assert [h["step"] for h in zero3] == [1, 2]
    for a, b in zip(single, zero3):  # the policy loss is ~0 at each first minibatch (ratio 1, whitened advantages)
        assert close(a["objective/scores"], b["objective/scores"]) and close(a["loss/value"], b["loss/value"]), (a, b)
        assert abs(a["loss/policy"] - b["loss/policy"]) < 1e-5


def test_best_of_n_under_zero3_launch(tmp_path, reward_folder):
    """Best-of-N is inference: each process samples its share of the prompts with a whole copy of the models."""
    from trl_ext.data import load_prompts

    bon = ["model=tiny", f"reward_model={reward_folder}", "max_prompts=5", "sampling.n=2"]
    run_cmd(accelerate_cmd("recipes/bon.py", *bon, "sampling.generation.max_new_tokens=4", f"hydra.run.dir={tmp_path}"))
    best = [json.loads(line) for line in (tmp_path / "bon" / "best.jsonl").read_text().splitlines()]
    assert [row["prompt"] for row in best] == list(load_prompts("demo", eval_size=0.15, seed=42)[0]["train"]["prompt"])[
        :5
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hydra", "bon", "bon.log"]


def test_user_errors_are_reported_by_every_rank_with_its_name(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "chosen": "", "rejected": "no"}\n')
    proc = subprocess.run(
        accelerate_cmd(
            "recipes/dpo.py", "model=tiny", "data=local", f"data.path={bad}", f"hydra.run.dir={tmp_path}/run"
        ),
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and 'recipes/dpo.py", line' not in proc.stderr  # the message, no traceback
    for rank in (0, 1):
        assert f"error (rank {rank}/2): Invalid data" in proc.stderr
    assert proc.stderr.count(f"{bad}:line 1: chosen response is empty") == 2


@pytest.mark.slow
def test_multirun_sweep_two_processes_one_folder_per_job(tmp_path):
    sweep = ["-m", "model=tiny", "trainer.max_steps=1", "trainer.eval_strategy=no", "trainer.save_strategy=no"]
    run_cmd(accelerate_cmd("recipes/dpo.py", *sweep, "trainer.beta=0.05,0.1", f"hydra.sweep.dir={tmp_path}"))
    jobs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert [j.split("trainer.beta=")[1].split(",")[0] for j in jobs] == ["0.05", "0.1"]
    for job in jobs:
        manifest = json.loads((tmp_path / job / "dpo" / "stage.json").read_text())
        assert (
            str(manifest["config"]["trainer"]["beta"]) in job and (tmp_path / job / ".hydra" / "config.yaml").exists()
        )


def test_accelerate_configs_load_and_leave_batching_to_the_recipe():
    from accelerate.commands.config.config_args import load_config_from_file

    names = {p.stem for p in (REPO / "conf/accelerate").glob("*.yaml")}
    assert {"cpu", "gpu", "ddp", "zero2", "zero3", "zero3_offload", "fsdp2", "multinode", "zero3_cpu"} <= names
    for name in sorted(names):
        config = load_config_from_file(str(REPO / "conf/accelerate" / f"{name}.yaml"))
        ds = config.deepspeed_config or {}
        assert "gradient_accumulation_steps" not in ds and "gradient_clipping" not in ds, name  # trainer.* decide
        if "deepspeed_config_file" in ds:
            assert (REPO / ds["deepspeed_config_file"]).exists(), name
        assert config.num_processes >= 1 and (config.num_machines == 1) == (name != "multinode"), name


def test_lora_under_fsdp_is_refused_before_training(tmp_path):
    proc = subprocess.run(
        [sys.executable, "recipes/sft.py", "model=tiny", f"hydra.run.dir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "ACCELERATE_USE_FSDP": "true"},
    )
    assert proc.returncode == 2 and "zero3.yaml" in proc.stderr and "peft=none" in proc.stderr
