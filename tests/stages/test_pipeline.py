"""Pipelines composed in process on the tiny model (conf/debug/default.yaml): what each stage takes from the stages
before it (the latest policy, reward model, pairs), repeated stages, and the report of every model made."""

import json

from transformers import AutoModelForCausalLM

from tests.conftest import HH_FILE, compose, needs_hh
from trl_ext.stages import POLICY, dpo, pipeline
from trl_ext.stages.evaluation import log_history


def run_pipeline(run_dir, *overrides: str):
    return pipeline.run(compose("pipeline", "+debug=default", "dpo.trainer.max_steps=3", *overrides), run_dir)


def test_dpo_stage_with_length_regularisation(tmp_path):
    out = dpo.run(compose("dpo", "+debug=default", "rdpo_alpha=0.01"), tmp_path)
    assert out.makes == POLICY and json.loads((out.path / "stage.json").read_text())["config"]["rdpo_alpha"] == 0.01


def test_rlhf_pipeline_sft_rm_ppo(tmp_path):
    run_pipeline(
        tmp_path,
        "pipeline=sft_rm_ppo",
        "ppo.trainer.max_steps=3",
        "ppo.trainer.save_steps=2",
    )
    report = (tmp_path / "report.md").read_text()
    assert "| reward |" in report and "| ppo |" in report
    history = log_history(tmp_path / "ppo")
    assert [h["step"] for h in history] == [1, 2, 3] and all("objective/kl" in h for h in history)
    manifest = json.loads((tmp_path / "ppo" / "stage.json").read_text())
    assert manifest["config"]["reward_model"] == str(tmp_path / "reward")
    AutoModelForCausalLM.from_pretrained(tmp_path / "ppo")


def test_on_policy_pipeline_sft_bon_dpo_two_rounds(tmp_path):
    run_pipeline(
        tmp_path,
        "pipeline=sft_bon_dpo",
        "pipeline.stages=[sft,reward,bon,dpo,bon,dpo]",
        "bon.max_prompts=6",
        "bon.sampling.generation.max_new_tokens=8",
    )
    for stage in ("bon", "bon_2", "dpo", "dpo_2"):
        assert (tmp_path / stage / "stage.json").exists(), stage
    pairs = [json.loads(line) for line in (tmp_path / "bon" / "pairs.jsonl").read_text().splitlines()]
    assert pairs and all(p["chosen_score"] >= p["rejected_score"] for p in pairs)
    assert json.loads((tmp_path / "dpo" / "stage.json").read_text())["config"]["data"]["path"].endswith(
        "bon/pairs.jsonl"
    )
    # the second round samples from the first round's DPO policy
    assert json.loads((tmp_path / "bon_2" / "stage.json").read_text())["config"]["model"]["path"] == str(
        tmp_path / "dpo"
    )
    assert (tmp_path / "bon" / "bon_curve.png").exists() and "| dpo_2 |" in (tmp_path / "report.md").read_text()


@needs_hh
def test_pipeline_on_shared_hh_rlhf(tmp_path):
    run_pipeline(
        tmp_path,
        "data=hh_rlhf",
        f"data.path={HH_FILE}",
        "data.max_rows=60",
    )
    report = (tmp_path / "report.md").read_text()
    assert "60 rows" in report and "| dpo |" in report
