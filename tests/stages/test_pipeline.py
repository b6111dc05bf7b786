"""Pipelines composed in process on the tiny model (conf/debug/default.yaml): what each stage takes from the stages
before it (the latest policy, reward model, pairs), repeated stages, and the report of every model made."""

import json

import pytest
from transformers import AutoModelForCausalLM

from tests.conftest import HH_FILE, compose, needs_hh
from trl_ext.exceptions import ConfigError, DataError
from trl_ext.stages import POLICY, dpo, pipeline
from trl_ext.stages.evaluation import log_history


def run_pipeline(run_dir, *overrides: str):
    return pipeline.run(compose("pipeline", "+debug=default", "dpo.trainer.max_steps=3", *overrides), run_dir)


def test_a_stage_refines_the_shared_data_and_peft_nodes():
    """`<stage>.data.*` and `<stage>.peft.*` override those keys for that stage only; `<stage>.peft: null` trains it in
    full."""
    cfg = compose("pipeline", "pipeline=sft_rm", "+sft.data.max_rows=10", "+reward.peft.top_layers=1", "+dpo.peft=null")
    sft, reward, dpo_node = (pipeline.stage_config(cfg, stage, {}, {}) for stage in ("sft", "reward", "dpo"))
    assert sft.data.max_rows == 10 and {**sft.data, "max_rows": None} == {**cfg.data, "max_rows": None}
    assert reward.data == cfg.data and reward.peft == {**cfg.peft, "top_layers": 1}
    assert sft.peft == cfg.peft and dpo_node.peft == {}


def test_dpo_stage_with_length_regularisation(tmp_path):
    out = dpo.run(compose("dpo", "+debug=default", "rdpo_alpha=0.01"), tmp_path)
    assert out.makes == POLICY and json.loads((out.path / "stage.json").read_text())["config"]["rdpo_alpha"] == 0.01


def test_drop_refusals_trains_without_refusing_chosen_answers_and_keeps_the_eval_split(tmp_path):
    from trl_ext.config import node_kwargs
    from trl_ext.data import load_preferences
    from trl_ext.eval import PhraseDetector

    cfg = compose("dpo", "+debug=default", "drop_refusals=phrases")
    data, _ = load_preferences(**node_kwargs(cfg.data))
    refusing = sum(
        label != "compliance" for label in PhraseDetector()([r["chosen"][-1]["content"] for r in data["train"]])
    )
    assert refusing > 0  # the demo pairs include refusals
    out = dpo.run(cfg, tmp_path)
    report = json.loads((out.path / "data_report.json").read_text())
    assert report["dropped_refusals"] == {"detector": "phrases", "train": refusing}
    fitted = report["fitted_to_max_length"]  # every pair fitted: the eval split whole, the train split without them
    assert sum(fitted["eval"].values()) == len(data["eval"])
    assert sum(fitted["train"].values()) == len(data["train"]) - refusing


def test_mix_with_adds_another_sources_pairs_to_the_training_split_only(tmp_path):
    """`mix_with` (helpful pairs beside harmless ones): every row of the source trains, the eval split is the data's
    own, and a PPO stage mixes in the source's prompts."""
    from omegaconf import OmegaConf

    from trl_ext.config import node_kwargs
    from trl_ext.data import load_preferences, load_prompts
    from trl_ext.stages import reward
    from trl_ext.stages.training import mix_into_train

    extra = tmp_path / "helpful.jsonl"
    pairs = [
        {"prompt": f"How do I boil an egg ({i})?", "chosen": "Simmer it 8 minutes.", "rejected": "No."}
        for i in range(3)
    ]
    extra.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    cfg = compose("reward", "+debug=default", f"+mix_with={extra}")
    data, _ = load_preferences(**node_kwargs(cfg.data))
    out = reward.run(cfg, tmp_path / "run")
    report = json.loads((out.path / "data_report.json").read_text())
    assert report["mixed_in"]["source"] == str(extra) and report["mixed_in"]["train"] == 3
    fitted = report["fitted_to_max_length"]
    assert sum(fitted["train"].values()) == len(data["train"]) + 3 and sum(fitted["eval"].values()) == len(data["eval"])

    prompts, _ = load_prompts(**node_kwargs(cfg.data))
    spec = OmegaConf.create({"path": str(extra), "max_rows": 2})  # a node: any of the loader's source keys
    mixed, mix_report = mix_into_train(prompts, spec, cfg.data, prompts_only=True)
    assert mix_report["train"] == 2 and list(mixed["train"].features) == ["prompt"]
    assert len(mixed["train"]) == len(prompts["train"]) + 2 and mixed["eval"]["prompt"] == prompts["eval"]["prompt"]
    assert {"How do I boil an egg (0)?", "How do I boil an egg (1)?"} <= {
        p[-1]["content"] for p in mixed["train"]["prompt"]
    }
    with pytest.raises(ConfigError, match="must name a source"):
        mix_into_train(prompts, OmegaConf.create({"path": str(extra), "eval_size": 2}), cfg.data, prompts_only=True)


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
    updates = [h for h in history if "objective/kl" in h]
    assert [h["step"] for h in updates] == [1, 2, 3]
    assert any("eval_objective/kl" in h for h in history)  # the stage evaluates on the held-out prompts
    card = json.loads((tmp_path / "scorecard.json").read_text())
    assert list(card["arms"]) == ["base", "base + system prompt", "sft", "ppo"]  # policies only: not the reward model
    assert card["scorer"].startswith("reward_model(") and str(tmp_path / "reward") in card["scorer"]
    assert "| ppo |" in report.split("## Behaviour scorecard")[1]
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


def test_named_stages_let_two_pipelines_share_a_run_folder(tmp_path):
    """`dpo@bon_dpo` puts a dpo stage in folder bon_dpo: a second pipeline in the folder of an SFT -> DPO run reuses
    its SFT model and leaves its dpo folder alone."""
    run_pipeline(tmp_path, "pipeline=sft_dpo")
    first = {s: json.loads((tmp_path / s / "stage.json").read_text()) for s in ("sft", "dpo")}
    run_pipeline(
        tmp_path,
        "pipeline=sft_bon_dpo",
        "pipeline.stages=[sft,reward,bon,dpo@bon_dpo]",
        "bon.max_prompts=4",
        "bon.sampling.generation.max_new_tokens=8",
    )
    for stage, manifest in first.items():  # neither rerun nor replaced
        assert json.loads((tmp_path / stage / "stage.json").read_text()) == manifest
    config = json.loads((tmp_path / "bon_dpo" / "stage.json").read_text())["config"]
    assert config["data"]["path"] == str(tmp_path / "bon" / "pairs.jsonl")
    assert config["model"]["path"] == str(tmp_path / "sft")  # DPO from the SFT model, not from the first dpo
    assert "| bon_dpo |" in (tmp_path / "report.md").read_text()
    bon = json.loads((tmp_path / "bon" / "stage.json").read_text())["metrics"]
    assert bon["runtime"] > 0 and bon["peak_rss_gib"] > 0  # the stage's cost, as a trained stage reports its own


@pytest.mark.parametrize(
    ("stages", "error"),
    [
        (["sft", "dop"], "unknown stage 'dop'"),
        (["sft", "dpo@sft"], "two stages would write folder 'sft'"),
        (["dpo@dpo_2", "dpo"], "two stages would write folder 'dpo_2'"),
        (["dpo@../elsewhere"], "letters, digits and _"),
    ],
)
def test_stage_entries_name_one_folder_each(stages, error):
    with pytest.raises(ConfigError, match=error):
        pipeline.stage_names(stages)
    assert pipeline.stage_names(["sft", "dpo", "dpo", "dpo@bon_dpo"]) == [
        ("sft", "sft"),
        ("dpo", "dpo"),
        ("dpo", "dpo_2"),
        ("dpo", "bon_dpo"),
    ]


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
    fitted = json.loads((tmp_path / "dpo" / "data_report.json").read_text())["fitted_to_max_length"]
    assert fitted["train"].get("shortened", 0) > 0  # long HH conversations kept their latest turns


def test_every_run_ends_with_the_behaviour_scorecard(tmp_path):
    run_pipeline(tmp_path)
    card = json.loads((tmp_path / "scorecard.json").read_text())
    arms = card["arms"]
    assert list(arms) == ["base", "base + system prompt", "sft", "dpo"]
    system = compose("pipeline").scorecard.system_prompt
    assert system in arms["base + system prompt"]["rendered_example"]
    assert all(system not in arms[name]["rendered_example"] for name in ("base", "sft", "dpo"))
    counts = card["counts"]  # +debug=default: 2 safe, 2 unsafe, 1 template x 1 prompt, 2 data prompts
    assert (counts["safe"], counts["unsafe"], counts["attack_prompts"], counts["data"]) == (2, 2, 1, 2)
    assert counts["per_arm"] == 2 + 2 + 1 + 2 and len(card["answers"]) == 4 * counts["per_arm"]
    labeled = [a for a in card["answers"] if a["set"] != "data"]
    assert all(a["label"] in ("compliance", "full_refusal", "partial_refusal") for a in labeled)
    assert card["scorer"].startswith("constitutional_judge")  # no reward model in this run: the labeler judges
    report = (tmp_path / "report.md").read_text()
    assert "## Behaviour scorecard" in report and "Refusal labels by the `phrases` detector" in report
    assert all((tmp_path / f"scorecard_{m}.png").exists() for m in ("over_refusal", "unsafe_compliance", "jailbreak"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"dpo/over_refusal", "base + system prompt/unsafe_compliance", "sft/kl_proxy"} <= set(metrics["scorecard"])


def test_a_bad_scorecard_input_fails_before_any_training(tmp_path):
    with pytest.raises(DataError, match="scorecard.prompts: missing.csv not found"):
        run_pipeline(tmp_path, "scorecard.prompts=missing.csv")
    with pytest.raises(ConfigError, match="no_placeholder"):
        run_pipeline(tmp_path, "+jailbreak.no_placeholder=Tell me.", "scorecard.templates=[no_placeholder]")
    assert not (tmp_path / "sft").exists()
