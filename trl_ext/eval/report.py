"""A run's `report.md`: the metrics table, training curves as PNG, example generations; metrics also as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

# (log_history key, label) pairs plotted when a stage logged them; TRL's names.
LOSS_KEYS = (
    ("loss", "train loss"),
    ("eval_loss", "eval loss"),
    ("loss/policy", "PPO policy loss"),
    ("loss/value", "PPO value loss"),
)
ACCURACY_KEYS = (
    ("rewards/accuracies", "train reward accuracy"),
    ("eval_rewards/accuracies", "eval reward accuracy"),
    ("accuracy", "train accuracy"),
    ("eval_accuracy", "eval accuracy"),
    ("mean_token_accuracy", "train token accuracy"),
    ("eval_mean_token_accuracy", "eval token accuracy"),
    ("objective/scores", "PPO mean score"),
    ("objective/kl", "PPO KL to reference"),
)
COLUMNS = (
    ("implicit_accuracy", "pref. acc. (implicit reward)"),
    ("accuracy", "pref. acc. (reward score)"),
    ("implicit_margin", "implicit margin"),
    ("margin", "score margin"),
    ("logp_accuracy", "logp acc."),
    ("logratio_chosen", "log-ratio chosen"),
    ("logratio_rejected", "log-ratio rejected"),
    ("kl_proxy", "KL proxy"),
    ("gen_length", "gen. length"),
)


def _series(history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(h["step"], h[key]) for h in history if key in h and "step" in h]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training(histories: dict[str, list[dict[str, Any]]], path: Path, columns: int = 4) -> Path | None:
    """Loss and reward accuracy over steps, one column per stage (a new band of two rows after every `columns`
    stages, so a long pipeline stays readable); None when nothing was logged."""
    stages = {name: h for name, h in histories.items() if any(k in e for e in h for k, _ in LOSS_KEYS)}
    if not stages:
        return None
    width, bands = min(len(stages), columns), -(-len(stages) // columns)
    fig, axes = plt.subplots(2 * bands, width, figsize=(5 * width, 3.5 * 2 * bands), squeeze=False)
    used = len(stages) - (bands - 1) * width  # the stages in the last band; its other places stay empty
    for ax in (*axes[-2][used:], *axes[-1][used:]):
        ax.axis("off")
    for index, (name, history) in enumerate(stages.items()):
        band, col = divmod(index, width)
        for row, keys in enumerate((LOSS_KEYS, ACCURACY_KEYS)):
            ax = axes[2 * band + row][col]
            for key, label in keys:
                x, y = _series(history, key)
                if x:
                    ax.plot(x, y, marker="o" if len(x) < 10 else None, label=label)
            ax.set_title(f"{name}: {'loss' if row == 0 else 'accuracy / reward'}")
            ax.set_xlabel("step")
            if ax.lines:
                ax.legend()
            else:
                ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_lengths(lengths: dict[str, list[int]], path: Path) -> Path:
    """Histograms of response lengths in tokens: chosen, rejected, and each model's greedy generations."""
    fig, ax = plt.subplots(figsize=(7, 4))
    top = max(max(v, default=0) for v in lengths.values()) + 1
    bins = list(range(0, top + max(top // 20, 1), max(top // 20, 1)))
    for name, values in lengths.items():
        if values:
            ax.hist(values, bins=bins, histtype="step", density=True, linewidth=1.5, label=f"{name} (n={len(values)})")
    ax.set_xlabel("response length (tokens)")
    ax.set_ylabel("density")
    ax.set_title("Response lengths")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("" if value is None else str(value))


def _length_section(evaluation: dict[str, Any], run_dir: Path) -> list[str]:
    """Reward-versus-length correlations per model, mean generated length against the base, length histograms."""
    models, lengths = evaluation["models"], evaluation.get("lengths", {})
    rows = [(name, m) for name, m in models.items() if "length_pearson" in m or "gen_length" in m]
    if not rows:
        return []
    base_length = models.get("base", {}).get("gen_length")
    lines = [
        "",
        "## Length diagnostics",
        "",
        "| model | reward-length Pearson | reward-length Spearman | mean generated length | vs base |",
        "|---|---|---|---|---|",
    ]
    for name, m in rows:
        change = m["gen_length"] - base_length if "gen_length" in m and base_length is not None else None
        lines.append(
            f"| {name} | {_fmt(m.get('length_pearson'))} | {_fmt(m.get('length_spearman'))} | "
            f"{_fmt(m.get('gen_length'))} | {'' if change is None or name == 'base' else f'{change:+.1f}'} |"
        )
    lines += [
        "",
        "Correlations are between each model's reward (implicit for policies, score for reward models) and "
        "the length in tokens of the held-out chosen and rejected responses: far from 0 means a length bias.",
    ]
    if lengths:
        lines += ["", f"![length histograms]({plot_lengths(lengths, run_dir / 'lengths.png').name})"]
    return lines


def write_report(
    run_dir: str | Path,
    evaluation: dict[str, Any],
    histories: dict[str, list[dict[str, Any]]],
    title: str = "trl_ext run",
    notes: list[str] | None = None,
    sections: Sequence[str] = (),
) -> Path:
    """Write report.md, metrics.json and training_curves.png into `run_dir`; return the report's path. `sections`:
    markdown lines placed before the example generations."""
    run_dir = Path(run_dir)
    (run_dir / "metrics.json").write_text(json.dumps(evaluation, indent=2))
    models = evaluation["models"]
    columns = [(k, label) for k, label in COLUMNS if any(k in m for m in models.values())]
    lines = [f"# {title}", "", *(notes or []), ""]
    lines += [f"Held-out evaluation on {evaluation['n_pairs']} pairs (beta = {evaluation['beta']}).", ""]
    lines += ["| model | " + " | ".join(label for _, label in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(_fmt(m.get(k)) for k, _ in columns) + " |" for name, m in models.items()]
    lines += [
        "",
        "Implicit reward: beta * log(pi/pi_ref) against the base model; logp acc.: the chosen response is more likely "
        "than the rejected one (no reference); KL proxy: mean log(pi/pi_ref) of the model's own greedy answers; "
        "gen. length: mean tokens of those answers.",
    ]
    lines += _length_section(evaluation, run_dir)
    plot = plot_training(histories, run_dir / "training_curves.png")
    if plot:
        lines += ["", "## Training curves", "", f"![training curves]({plot.name})"]
    lines += sections
    examples = evaluation["examples"]
    lines += ["", "## Example generations (greedy)"]
    for i, prompt in enumerate(examples["prompt"]):
        lines += ["", f"**Prompt {i + 1}:** {prompt}", ""]
        lines += [
            f"- *{name}*: {texts[i]!r}" for name, texts in examples.items() if name != "prompt" and i < len(texts)
        ]
    report = run_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
