"""scripts/bench_ppo_kl.py: the PPO experiment rerun per KL coefficient from one SFT model and one reward model, and
what its table and verdict read off a scorecard."""

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
    assert "+models.ppo_kl0p5=outputs/quality/ppo_kl/ppo_kl0p5" in card and "scorecard.n_data=40" in card
    assert (
        "scorecard.scorer=reward_model" in card
        and "scorecard.prompts=xstest_study.csv" in card
        and "scorecard.n_data=0" not in card
    )


def card_and_answers():
    card = {}
    for arm, refused, complied, score in (
        ("base", 0.02, 0.9, -2.4),
        ("sft", 0.06, 0.85, -2.4),
        ("ppo", 0.39, 0.35, -2.0),
        ("ppo_kl0p5", 0.06, 0.8, -2.35),
    ):
        card |= {f"{arm}/over_refusal": refused, f"{arm}/unsafe_compliance": complied, f"{arm}/harmless_score": score}
        card |= {f"{arm}/harmless_win_rate": None if arm == "base" else 0.5, f"{arm}/mean_tokens": 30.0}
    # paired scores on 4 data prompts: ppo leads SFT by 0.4 on every one, ppo_kl0p5 by +-0.5 around +0.05
    lead = {"sft": [0, 0, 0, 0], "ppo": [0.4] * 4, "ppo_kl0p5": [0.55, -0.45, 0.55, -0.45]}
    answers = [
        {"set": "data", "arm": arm, "prompt_id": i, "score": s} for arm, ss in lead.items() for i, s in enumerate(ss)
    ]
    return card, answers


def test_the_verdict_reads_the_tax_against_the_base_model_and_the_lead_against_sft(bench):
    card, answers = card_and_answers()
    coefs = {"ppo": 0.05, "ppo_kl0p5": 0.5}
    text = "\n".join(bench.verdict(card, answers, coefs))
    assert "kl_coef 0.05 (ppo): over-refusal 0.390, 37 points above the base model, outside the target's 5" in text
    assert "kl_coef 0.5 (ppo_kl0p5): over-refusal 0.060, 4 points above the base model, within the target's 5" in text
    assert (
        "(ppo): over-refusal 0.390, 37 points above the base model, outside the target's 5; harmlessness score "
        "against SFT beyond the noise (+0.400 +-0.000)" in text
    )
    assert "against SFT inside the noise (+0.050" in text


def test_the_table_has_a_row_per_arm_with_the_ppo_runs_validation_figures(bench):
    card, answers = card_and_answers()
    ppo = {"ppo": {"reward_before": 0.6, "reward": 0.9, "kl": 2.95}}
    lines = bench.rows(card, answers, ppo, {"ppo": 0.05, "ppo_kl0p5": 0.5})
    assert [line.split(" | ")[0] for line in lines] == ["| base", "| sft", "| ppo", "| ppo_kl0p5"]
    assert lines[0] == "| base | - | - | - | 0.020 (+0) | 0.900 | -2.400 | - | n/a | 30.0 |"
    assert (
        lines[2]
        == "| ppo | 0.05 | 0.600 -> 0.900 | 2.95 | 0.390 (+37) | 0.350 | -2.000 | +0.400 +-0.000 | 0.500 | 30.0 |"
    )
