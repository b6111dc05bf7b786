"""Does mixing in helpful pairs, or a smaller learning rate, keep DPO from learning to decline safe requests?

docs/results.md shows the SFT -> DPO experiment (conf/experiment/hh_dpo_smollm2.yaml) declining a quarter of XSTest's
safe prompts on the held-out report, the base model almost none: HH harmless-base's chosen answers are often evasive,
and DPO learns the evasion with the harmlessness. HH-RLHF itself trains on harmless and helpful pairs together, so
that benign requests whose helpful answer wins pull the other way. This benchmark runs the experiment on the train
part's study split (scripts/bench_quality.py; never the held-out part) from one SFT model, per learning rate, each
once as it is and, with `--mix-with SOURCE`, once more with SOURCE's pairs added to DPO's training pairs
(`dpo.mix_with`; the validation pairs stay HH's), and scores every DPO model on the XSTest prompts the held-out report
does not use: over-refusal and unsafe compliance, beside its validation accuracy (implicit reward against the SFT
model) on the run's own HH pairs.

    python scripts/bench_dpo_tax.py                                    # the experiment's learning rate (5e-4), 2e-4
    python scripts/bench_dpo_tax.py --learning-rates 5e-4 --mix-with demo   # the 200 pairs shipped with trl_ext
    python scripts/bench_dpo_tax.py --learning-rates 5e-4 --mix-with demo --mix-rows 50   # their first 50 only

Appends a section to docs/benchmarks.md. The runs share bench_ppo_kl.py's run folder (outputs/quality/ppo_kl): the two
experiments' SFT stage is the same, so the pipeline trains it once for both. On 2026-12-07's 2-core CPU (float32) a DPO
run took about 25 min (31 with the 200 demo pairs), the pipeline's evaluation after it included, and the scorecard of
the base model, the band-aid, SFT and two DPO models about 12 min. A later run, alone on the CPU: the DPO stage with 50
demo pairs mixed in took 34.5 min (about 11 of them the reference model's log-probabilities, 19.7 training and
validating), the pipeline's evaluation 5 and the scorecard 13. Every run is a recipe command that resumes and skips what
is complete, so a rerun costs only what is new (the pipeline's evaluation is run again, about 4 min).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_quality as quality  # noqa: E402
from bench_common import append_section  # noqa: E402
from bench_ppo_kl import RUNS, TAX, card_sentence, composed_setting, run_and_score  # noqa: E402

EXPERIMENT = "hh_dpo_smollm2"


def experiment_learning_rate() -> float:
    """The learning rate the experiment's DPO stage trains with."""
    return float(composed_setting(EXPERIMENT, "dpo.trainer.learning_rate"))


def variants(
    rates: list[float], default: float, mix_with: str | None, mix_rows: int | None = None
) -> dict[str, tuple[float, str | None]]:
    """DPO stage folder: (its learning rate, the source mixed in or None). The experiment as it is trains in `dpo`,
    as the experiment names it; with `mix_with`, every rate trains once more with it, in `<folder>_mix`, or
    `<folder>_mix<N>` with only the source's first `mix_rows` rows."""
    runs = {}
    for rate in dict.fromkeys(rates):
        name = "dpo" if rate == default else f"dpo_lr{rate:g}".replace(".", "p").replace("-", "m")
        runs[name] = (rate, None)
        if mix_with:
            runs[f"{name}_mix{mix_rows or ''}"] = (rate, mix_with)
    return runs


def pipeline_args(
    name: str, rate: float, default: float, mix_with: str | None, mix_rows: int | None = None
) -> list[str]:
    """One DPO run: the experiment on the study's training pairs from the SFT model every run in RUNS shares; with
    `mix_rows`, only the first rows of `mix_with` are added (`dpo.mix_with` as a node with `max_rows`)."""
    args = ["recipes/pipeline.py", f"+experiment={EXPERIMENT}", *quality.data_args(quality.STUDY_TRAIN_FILE)]
    args.append("scorecard.enabled=false")
    if name != "dpo":
        args.append(f"pipeline.stages=[sft,dpo@{name}]")
    if rate != default:
        args.append(f"dpo.trainer.learning_rate={rate:g}")
    if mix_with and mix_rows:
        args += [f"+dpo.mix_with.path={mix_with}", f"+dpo.mix_with.max_rows={mix_rows}"]
    elif mix_with:
        args.append(f"+dpo.mix_with={mix_with}")
    return [*args, f"hydra.run.dir={RUNS}"]


def rows(card: dict, dpo: dict[str, dict], runs: dict[str, tuple[float, str | None]]) -> list[str]:
    """The table: one row per arm of the scorecard; the DPO rows with their settings and validation accuracy."""
    lines = []
    for arm in dict.fromkeys(key.rsplit("/", 1)[0] for key in card):
        get = lambda m, arm=arm: card[f"{arm}/{m}"]  # noqa: E731
        above = 100 * (get("over_refusal") - card["base/over_refusal"])
        rate, mixed = runs.get(arm, (None, None))
        pairs = dpo.get(arm, {}).get("mixed_in")
        cells = [
            f"{rate:g}" if rate is not None else "-",
            "-" if rate is None else f"{mixed} ({pairs} pairs)" if pairs else mixed or "none",
            f"{dpo[arm]['accuracy']:.3f}" if arm in dpo else "-",
            f"{get('over_refusal'):.3f} ({above:+.0f})",
            f"{get('unsafe_compliance'):.3f}",
            f"{get('mean_tokens'):.1f}",
        ]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def verdict(card: dict, dpo: dict[str, dict], runs: dict[str, tuple[float, str | None]]) -> list[str]:
    """Per DPO model: within the tax target or not, beside what it ranks right and what the SFT model refuses."""
    base, sft, lines = card["base/over_refusal"], card.get("sft/over_refusal"), []
    for name, (rate, mixed) in runs.items():
        refused = card[f"{name}/over_refusal"]
        points = round(100 * (refused - base))
        within = "within" if refused - base <= TAX + 1e-9 else "outside"
        made = f"lr {rate:g}" + (f", {dpo[name].get('mixed_in', '?')} pairs of {mixed} mixed in" if mixed else "")
        than_sft = f" (SFT: {sft:.3f})" if sft is not None else ""
        lines.append(
            f"- {name} ({made}): over-refusal {refused:.3f}{than_sft}, {points} point{'s' * (points != 1)} above "
            f"the base model, {within} the target's {100 * TAX:.0f}; unsafe compliance "
            f"{card[f'{name}/unsafe_compliance']:.3f}; validation accuracy {dpo[name]['accuracy']:.3f}."
        )
    return lines


def figures(folder: Path) -> dict:
    """A DPO stage's validation figures, and how many training pairs it mixed in (none: absent)."""
    report = quality.load_json(folder / "data_report.json") or {}
    mixed = {"mixed_in": report["mixed_in"]["train"]} if "mixed_in" in report else {}
    validated = sum(report.get("fitted_to_max_length", {}).get("eval", {}).values())  # fits, shortened, too long
    return quality.study_figures(folder, "dpo") | mixed | {"eval_pairs": validated}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--learning-rates", type=float, nargs="+", help="DPO learning rates (default: the experiment's, 2e-4)"
    )
    parser.add_argument(
        "--mix-with", metavar="SOURCE", help="also train each rate with SOURCE's pairs added (demo, a file, a hub id)"
    )
    parser.add_argument("--mix-rows", type=int, metavar="N", help="add only the first N of SOURCE's pairs")
    args = parser.parse_args()
    os.chdir(quality.REPO)
    if not quality.HH.exists():
        raise SystemExit(f"{quality.HH} not found: this benchmark needs the shared HH-RLHF file beside the project")
    quality.split()
    default = experiment_learning_rate()
    if args.mix_rows and not args.mix_with:
        parser.error("--mix-rows needs --mix-with SOURCE")
    runs = variants(args.learning_rates or [default, 2e-4], default, args.mix_with, args.mix_rows)
    commands = [pipeline_args(name, rate, default, mixed, args.mix_rows) for name, (rate, mixed) in runs.items()]
    title = "DPO against the alignment tax: learning rate and mixed-in pairs"
    card_folder, lines = run_and_score(commands, list(runs), title)
    card = quality.card_of(card_folder)
    dpo = {name: figures(RUNS / name) for name in runs}
    pairs = next(iter(dpo.values()))["eval_pairs"]
    lines += [
        f"The {EXPERIMENT} experiment on the study's training pairs (the train part's, never the held-out part's), "
        "from one SFT model; validation accuracy: DPO's implicit reward against the SFT model on the run's own "
        f"validation pairs, HH's, the same {pairs} for every row (+-{quality.half_width(pairs or 1):.2f}, 95%). "
        + card_sentence(card_folder),
        "",
        "| arm | learning rate | mixed in | validation accuracy | over-refusal (points above base) | unsafe compliance "
        "| tokens |",
        "|---|---|---|---|---|---|---|",
        *rows(card, dpo, runs),
        "",
        *verdict(card, dpo, runs),
    ]
    append_section("\n".join(lines))


if __name__ == "__main__":
    main()
