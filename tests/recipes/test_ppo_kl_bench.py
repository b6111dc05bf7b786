"""scripts/bench_ppo_kl.py: the PPO experiment rerun per KL coefficient from one SFT model and one reward model, and
what its table and verdict read off a scorecard."""

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, compose
from trl_ext.stages.pipeline import stage_config


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import bench_ppo_kl

    return bench_ppo_kl


def overrides(args: list[str]) -> list[str]:
    """A pipeline command's Hydra overrides, less the data file and the run folder (not needed to compose)."""
    return [a for a in args[1:] if not a.startswith(("data", "hydra.run.dir"))]


def test_each_coefficient_trains_its_own_ppo_stage_beside_the_shared_sft_and_reward_stages(bench):
    default = bench.experiment_kl_coef()
    assert default == compose("pipeline", "+experiment=hh_ppo_smollm2").ppo.trainer.kl_coef
    coefs = bench.variants([default, 0.2, 0.5, 0.2], default)
    assert coefs == {"ppo": default, "ppo_kl0p2": 0.2, "ppo_kl0p5": 0.5}  # the experiment's own run keeps its name
    plain = compose("pipeline", *overrides(bench.pipeline_args("ppo", default, default)))
    assert list(plain.pipeline.stages) == ["sft", "reward", "ppo"] and plain.ppo.trainer.eval_on_start
    varied = compose("pipeline", *overrides(bench.pipeline_args("ppo_kl0p5", 0.5, default)))
    assert list(varied.pipeline.stages) == ["sft", "reward", "ppo@ppo_kl0p5"]
    assert varied.ppo.trainer.kl_coef == 0.5 and plain.ppo.trainer.kl_coef == default
    # only the PPO stage differs: the pipeline reuses the SFT model and the reward model of the first run
    for stage in ("sft", "reward"):
        assert stage_config(varied, stage, {}, {}) == stage_config(plain, stage, {}, {})
    assert varied.ppo != plain.ppo
    card = bench.card_args(list(coefs), Path("xstest_study.csv"))
    assert "+models.ppo_kl0p5=outputs/quality/ppo_kl/ppo_kl0p5" in card and "scorecard.prompts=xstest_study.csv" in card
    assert "scorecard.n_safe=null" in card and "scorecard.n_unsafe=50" in card and "scorecard.n_unsafe=null" not in card
    assert card[-1] == "hydra.run.dir=outputs/quality/ppo_kl_card/ppo-ppo_kl0p2-ppo_kl0p5"  # its own folder per set


CARD = {}
for arm, refused, complied in (("base", 0.02, 0.9), ("sft", 0.06, 0.85), ("ppo", 0.39, 0.35), ("ppo_kl0p5", 0.06, 0.8)):
    CARD |= {f"{arm}/over_refusal": refused, f"{arm}/unsafe_compliance": complied, f"{arm}/mean_tokens": 30.0}
PPO = {
    "ppo": {"reward_before": 0.6, "reward": 0.9, "kl": 2.95},
    "ppo_kl0p5": {"reward_before": 0.6, "reward": 0.65, "kl": 0.4},
}


def test_the_verdict_reads_the_tax_against_the_base_model_beside_what_ppo_gained(bench):
    text = "\n".join(bench.verdict(CARD, PPO, {"ppo": 0.05, "ppo_kl0p5": 0.5}))
    assert (
        "kl_coef 0.05 (ppo): over-refusal 0.390, 37 points above the base model, outside the target's 5; "
        "validation reward +0.300 at KL 2.95." in text
    )
    assert "kl_coef 0.5 (ppo_kl0p5): over-refusal 0.060, 4 points above the base model, within the target's 5" in text


def test_the_table_has_a_row_per_arm_with_the_ppo_runs_validation_figures(bench):
    lines = bench.rows(CARD, PPO, {"ppo": 0.05, "ppo_kl0p5": 0.5})
    assert [line.split(" | ")[0] for line in lines] == ["| base", "| sft", "| ppo", "| ppo_kl0p5"]
    assert lines[0] == "| base | - | - | - | 0.020 (+0) | 0.900 | 30.0 |"
    assert lines[2] == "| ppo | 0.05 | 0.600 -> 0.900 | 2.95 | 0.390 (+37) | 0.350 | 30.0 |"


def test_the_no_refusals_run_trains_its_own_reward_model_and_ppo_on_it(bench):
    default = bench.experiment_kl_coef()
    plain = compose("pipeline", *overrides(bench.pipeline_args("ppo", default, default)))
    own = bench.reward_variants("probe_or_phrases", None)
    assert list(own) == ["ppo_norefusals"]
    args = bench.pipeline_args("ppo_norefusals", default, default, own["ppo_norefusals"])
    assert not any(a.startswith("ppo.trainer.kl_coef") for a in args)  # the experiment's own coefficient
    dropped = compose("pipeline", *overrides(args))
    assert list(dropped.pipeline.stages) == ["sft", "reward@reward_norefusals", "ppo@ppo_norefusals"]
    assert stage_config(dropped, "sft", {}, {}) == stage_config(plain, "sft", {}, {})  # the shared SFT model
    assert stage_config(dropped, "reward", {}, {}).drop_refusals == "probe_or_phrases"
    assert stage_config(plain, "reward", {}, {}).get("drop_refusals") is None
    assert dropped.ppo == plain.ppo  # only the reward model differs
    phrases = bench.reward_variants("phrases", None)["ppo_norefusals"]
    both = compose("pipeline", *overrides(bench.pipeline_args("ppo_kl0p2", 0.2, default, phrases)))
    assert both.ppo.trainer.kl_coef == 0.2 and both.reward.drop_refusals == "phrases"


def test_the_mixed_run_adds_the_source_to_its_own_reward_models_pairs_and_to_ppos_prompts(bench):
    default = bench.experiment_kl_coef()
    plain = compose("pipeline", *overrides(bench.pipeline_args("ppo", default, default)))
    own = bench.reward_variants("phrases", "demo")
    assert list(own) == ["ppo_norefusals", "ppo_mix"]  # both options: one run each
    mixed = compose("pipeline", *overrides(bench.pipeline_args("ppo_mix", default, default, own["ppo_mix"])))
    assert list(mixed.pipeline.stages) == ["sft", "reward@reward_mix", "ppo@ppo_mix"]
    assert stage_config(mixed, "sft", {}, {}) == stage_config(plain, "sft", {}, {})  # the shared SFT model
    assert stage_config(mixed, "reward", {}, {}).mix_with == "demo" and mixed.ppo.mix_with == "demo"
    assert stage_config(mixed, "reward", {}, {}).get("drop_refusals") is None
    assert {**mixed.ppo, "mix_with": None} == {**plain.ppo, "mix_with": None}  # PPO's settings otherwise the same


def reward_folder(folder: Path, accuracy: float, data_report: dict) -> None:
    """A finished reward stage's files, as much of them as the reward line reads."""
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({"eval_accuracy": accuracy, "eval_margin": 0.1}))
    (folder / "stage.json").write_text(json.dumps({"metrics": {"train_runtime": 60.0}}))
    (folder / "data_report.json").write_text(json.dumps(data_report))


def test_the_reward_line_reads_what_dropping_refusals_cost_the_reward_model(bench, tmp_path):
    reward_folder(tmp_path / "reward", 0.734, {})
    reward_folder(
        tmp_path / "reward_norefusals", 0.703, {"dropped_refusals": {"detector": "probe_or_phrases", "train": 87}}
    )
    line = bench.reward_line(tmp_path / "reward", tmp_path / "reward_norefusals")
    assert line == (
        "- reward_norefusals: trained without the 87 pairs whose chosen answer the probe_or_phrases detector reads "
        "as a refusal, it ranks 0.703 of the validation pairs right (the shared reward model: 0.734)."
    )
    coefs = {"ppo": 0.05, "ppo_norefusals": 0.05}
    ppo = {"ppo": PPO["ppo"], "ppo_norefusals": PPO["ppo_kl0p5"]}
    card = CARD | {k.replace("ppo_kl0p5", "ppo_norefusals"): v for k, v in CARD.items() if "kl0p5" in k}
    assert (
        "(ppo_norefusals): over-refusal 0.060, 4 points above the base model, within the target's 5; validation "
        "reward by its own reward model +0.050" in "\n".join(bench.verdict(card, ppo, coefs))
    )


def test_the_reward_line_says_what_was_mixed_in(bench, tmp_path):
    reward_folder(tmp_path / "reward", 0.734, {})
    reward_folder(tmp_path / "reward_mix", 0.703, {"mixed_in": {"source": "demo", "train": 200, "rows": 200}})
    assert bench.reward_line(tmp_path / "reward", tmp_path / "reward_mix") == (
        "- reward_mix: trained with the 200 pairs of demo added, it ranks 0.703 of the validation pairs right "
        "(the shared reward model: 0.734)."
    )


def test_run_and_score_runs_every_command_then_one_scorecard_and_heads_the_section_with_them(
    bench, monkeypatch, tmp_path
):
    ran = []
    monkeypatch.setattr(bench.quality, "run", lambda args, log: ran.append((args, log.name)))
    monkeypatch.setattr(bench.quality, "study_prompts", lambda: Path("xstest_study.csv"))
    monkeypatch.setattr(bench, "CARDS", tmp_path)
    monkeypatch.setattr(bench, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(bench.sys, "argv", ["scripts/bench_ppo_kl.py", "--kl-coefs", "0.05"])
    commands = [["recipes/pipeline.py", "a"], ["recipes/pipeline.py", "b"]]
    folder, lines = bench.run_and_score(commands, ["ppo", "ppo_mix"], "A title")
    assert folder == tmp_path / "ppo-ppo_mix"
    assert [args for args, _ in ran[:2]] == commands and ran[2][0][0] == "recipes/eval.py"
    assert {log for _, log in ran} == {"ppo_kl.log"}  # beside the run folder, named after the script
    assert (
        lines[0].startswith("## A title (") and lines[2] == "Command: `python scripts/bench_ppo_kl.py --kl-coefs 0.05`."
    )
    assert lines[5:8] == [
        "    python recipes/pipeline.py a",
        "    python recipes/pipeline.py b",
        "    python " + " ".join(ran[2][0]),
    ]
    (folder).mkdir()
    (folder / "metrics.json").write_text("{}")  # a complete scorecard is not run again
    ran.clear()
    bench.run_and_score(commands, ["ppo", "ppo_mix"], "A title")
    assert [args for args, _ in ran] == commands
