"""How far to trust a judge: its verdicts on pairs people have already labeled.

Given verdicts on (prompt, human-chosen, human-rejected) triples, `human_agreement` measures agreement with the
people (swap-averaged, and with one order only), the position-bias rate (the fraction of verdicts whose winner
changes when the order is swapped) and calibration by confidence bucket (does agreement rise with |P - 0.5|?).
`audit_judge` runs the labeler on such pairs; `report_section` and `plot_calibration` show the result in a run's
report. The RLAIF recipe audits its judge on the held-out human pairs of its data, when the data has them.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trl_ext.rlaif.labeler import ConstitutionalLabeler, PairLabel


def human_agreement(labels: Sequence[PairLabel], buckets: int = 4) -> dict[str, Any]:
    """Agreement of verdicts on (prompt, chosen, rejected) with the human choice (`chosen`, i.e. "a").

    agreement: P > 0.5, the labeler's verdict (swap-averaged when it judged both orders).
    agreement_chosen_first / _second: the verdict of one order, the human-chosen response shown as (A) / as (B);
        their mean is the expected agreement of a judge that sees one order at random.
    position_bias_rate: verdicts whose winner changes with the order (None without swap).
    calibration: verdicts ranked by confidence |P - 0.5| into `buckets` equal parts, each with its confidence
        range, mean P of the judge's pick and agreement; a useful judge agrees more where it is more confident.
    Verdicts decided without the judge (identical responses) are left out and counted.
    """
    judged = [label for label in labels if label.skipped is None]
    if not judged:
        raise ValueError("no verdicts to audit (every pair was identical or there were none)")
    swap = judged[0].p_orders[1] is not None
    ranked = sorted(judged, key=lambda label: abs(label.p - 0.5))
    parts = min(buckets, len(ranked))
    calibration = []
    for b in range(parts):
        part = ranked[round(b * len(ranked) / parts) : round((b + 1) * len(ranked) / parts)]
        calibration.append(
            {
                "confidence_low": abs(part[0].p - 0.5),
                "confidence_high": abs(part[-1].p - 0.5),
                "pairs": len(part),
                "mean_p_pick": statistics.fmean(max(label.p, 1 - label.p) for label in part),
                "agreement": _rate(label.p > 0.5 for label in part),
            }
        )
    first = _rate(label.p_orders[0] > 0.5 for label in judged)
    second = _rate(label.p_orders[1] > 0.5 for label in judged) if swap else None
    return {
        "pairs": len(judged),
        "skipped": len(labels) - len(judged),
        "agreement": _rate(label.p > 0.5 for label in judged),
        "agreement_chosen_first": first,
        "agreement_chosen_second": second,
        "agreement_one_random_order": (first + second) / 2 if swap else None,
        "position_bias_rate": _rate(label.position_flip for label in judged) if swap else None,
        "mean_confidence": statistics.fmean(abs(label.p - 0.5) for label in judged),
        "calibration": calibration,
    }


def _rate(flags) -> float:
    flags = list(flags)
    return sum(flags) / len(flags)


def audit_judge(
    labeler: ConstitutionalLabeler,
    prompts: Sequence[Any],
    chosen: Sequence[Any],
    rejected: Sequence[Any],
    distributed: bool = False,
) -> dict[str, Any]:
    """Judge human-labeled pairs and measure the verdicts against the people (`human_agreement`), with the judge's
    name and the constitution's."""
    labels = labeler.label(prompts, chosen, rejected, distributed=distributed)
    return {"judge": labeler.name, "constitution": labeler.constitution.name, **human_agreement(labels)}


def plot_calibration(audit: dict[str, Any], path: str | Path) -> Path:
    """A reliability diagram: agreement with people against the judge's mean P of its pick, per confidence bucket
    (on the diagonal: calibrated; flat at 0.5: the confidence means nothing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buckets = audit["calibration"]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0.5, 1], [0.5, 1], linestyle="--", color="grey", label="calibrated")
    ax.plot([b["mean_p_pick"] for b in buckets], [b["agreement"] for b in buckets], marker="o", label="judge")
    for b in buckets:
        ax.annotate(str(b["pairs"]), (b["mean_p_pick"], b["agreement"]), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("judge's P of its pick (bucket mean)")
    ax.set_ylabel("agreement with people")
    ax.set_ylim(0, 1)
    ax.set_title(f"Judge calibration ({audit['pairs']} pairs)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def report_section(stage_dir: str | Path) -> list[str]:
    """Markdown lines on an RLAIF stage for a run's report: what it labeled, and its judge against people."""
    stage_dir = Path(stage_dir)
    metrics = json.loads((stage_dir / "metrics.json").read_text())
    lines = [
        "",
        f"## AI feedback: {stage_dir.name}",
        "",
        f"Judge {metrics['judge']}, constitution {metrics['constitution']}: {metrics.get('comparisons', 0)} "
        f"comparisons of the policy's samples for {metrics.get('prompts', 0)} prompts gave {metrics.get('pairs', 0)} "
        f"preference pairs ({metrics['comparisons_per_second']:.2f} comparisons per second; position-flip rate "
        f"{metrics['position_flip_rate']:.3f}; ties dropped {metrics.get('ties_dropped', 0)}).",
    ]
    audit_path = stage_dir / "audit.json"
    if not audit_path.exists():
        return lines + ["", "No human-labeled pairs in the data: the judge was not audited against people."]
    audit = json.loads(audit_path.read_text())
    lines += [
        "",
        f"The judge on {audit['pairs']} held-out human-labeled pairs of the data:",
        "",
        "| agreement with people | one order: chosen shown first / second | position-bias rate | mean abs(P - 0.5) |",
        "|---|---|---|---|",
        f"| {_fmt(audit['agreement'])} | {_fmt(audit['agreement_chosen_first'])} / "
        f"{_fmt(audit['agreement_chosen_second'])} | {_fmt(audit['position_bias_rate'])} | "
        f"{_fmt(audit['mean_confidence'], 4)} |",
        "",
        "| confidence abs(P - 0.5) | pairs | mean P of the pick | agreement |",
        "|---|---|---|---|",
        *(
            f"| {b['confidence_low']:.4f} - {b['confidence_high']:.4f} | {b['pairs']} | {b['mean_p_pick']:.3f} | "
            f"{b['agreement']:.3f} |"
            for b in audit["calibration"]
        ),
    ]
    plot = stage_dir / "calibration.png"
    if plot.exists():
        lines += ["", f"![judge calibration]({plot.parent.name}/{plot.name})"]
    return lines
