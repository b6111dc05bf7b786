"""scripts/bench_dpo_tax.py: the DPO experiment rerun per learning rate, with and without pairs mixed in, from the SFT
model bench_ppo_kl.py's runs share, and what its table and verdict read off a scorecard."""

from pathlib import Path

import pytest

from tests.conftest import REPO, compose
from trl_ext.stages.pipeline import stage_config


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import bench_dpo_tax

    return bench_dpo_tax


def overrides(args: list[str]) -> list[str]:
    """A pipeline command's Hydra overrides, less the data file and the run folder (not needed to compose)."""
    return [a for a in args[1:] if not a.startswith(("data", "hydra.run.dir"))]


def test_each_rate_trains_its_own_dpo_stage_from_the_sft_model_the_ppo_runs_share(bench):
    default = bench.experiment_learning_rate()
    assert default == compose("pipeline", "+experiment=hh_dpo_smollm2").dpo.trainer.learning_rate == 5e-4
    runs = bench.variants([default, 2e-4, default], default, "demo")
    assert runs == {"dpo": (5e-4, None), "dpo_mix": (5e-4, "demo"), "dpo_lr0p0002": (2e-4, None),
                    "dpo_lr0p0002_mix": (2e-4, "demo")}  # fmt: skip
    assert list(bench.variants([default], default, None)) == ["dpo"]  # no source: no mixed runs
    assert bench.variants([default], default, "demo", 50) == {"dpo": (5e-4, None), "dpo_mix50": (5e-4, "demo")}
    first = compose("pipeline", *overrides(bench.pipeline_args("dpo_mix50", default, default, "demo", 50)))
    assert first.dpo.mix_with == {"path": "demo", "max_rows": 50}  # the node form mix_into_train reads
    plain = compose("pipeline", *overrides(bench.pipeline_args("dpo", default, default, None)))
    assert list(plain.pipeline.stages) == ["sft", "dpo"] and plain.dpo.get("mix_with") is None
    both = compose("pipeline", *overrides(bench.pipeline_args("dpo_lr0p0002_mix", 2e-4, default, "demo")))
    assert list(both.pipeline.stages) == ["sft", "dpo@dpo_lr0p0002_mix"]
    assert both.dpo.trainer.learning_rate == 2e-4 and both.dpo.mix_with == "demo"
    assert {**both.dpo, "mix_with": None, "trainer": None} == {**plain.dpo, "mix_with": None, "trainer": None}
    # the SFT stage is the one the PPO experiment's runs in the same folder train, so the pipeline reuses it
    ppo_kl = compose("pipeline", "+experiment=hh_ppo_smollm2")
    assert (
        stage_config(both, "sft", {}, {}) == stage_config(ppo_kl, "sft", {}, {}) == stage_config(plain, "sft", {}, {})
    )
    assert bench.RUNS == Path("outputs/quality/ppo_kl")


CARD = {}
for arm, refused, complied in (("base", 0.02, 0.9), ("sft", 0.05, 0.85), ("dpo", 0.11, 0.8), ("dpo_mix", 0.06, 0.84)):
    CARD |= {f"{arm}/over_refusal": refused, f"{arm}/unsafe_compliance": complied, f"{arm}/mean_tokens": 30.0}
DPO = {"dpo": {"accuracy": 0.6}, "dpo_mix": {"accuracy": 0.55, "mixed_in": 200}}
RUNS = {"dpo": (5e-4, None), "dpo_mix": (5e-4, "demo")}


def test_the_table_has_a_row_per_arm_with_the_dpo_runs_settings_and_accuracy(bench):
    lines = bench.rows(CARD, DPO, RUNS)
    assert [line.split(" | ")[0] for line in lines] == ["| base", "| sft", "| dpo", "| dpo_mix"]
    assert lines[0] == "| base | - | - | - | 0.020 (+0) | 0.900 | 30.0 |"
    assert lines[2] == "| dpo | 0.0005 | none | 0.600 | 0.110 (+9) | 0.800 | 30.0 |"
    assert lines[3] == "| dpo_mix | 0.0005 | demo (200 pairs) | 0.550 | 0.060 (+4) | 0.840 | 30.0 |"


def test_the_verdict_reads_the_tax_against_the_base_model_beside_the_accuracy(bench):
    text = "\n".join(bench.verdict(CARD, DPO, RUNS))
    assert (
        "- dpo (lr 0.0005): over-refusal 0.110 (SFT: 0.050), 9 points above the base model, outside the target's 5; "
        "unsafe compliance 0.800; validation accuracy 0.600." in text
    )
    assert "- dpo_mix (lr 0.0005, 200 pairs of demo mixed in): over-refusal 0.060 (SFT: 0.050), 4 points" in text
    assert "within the target's 5" in text


def test_one_point_is_one_point(bench):
    card = CARD | {"dpo_mix/over_refusal": 0.03}
    assert "over-refusal 0.030 (SFT: 0.050), 1 point above the base model, within" in "\n".join(
        bench.verdict(card, DPO, RUNS)
    )
