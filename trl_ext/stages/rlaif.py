"""RLAIF stage: prompts -> two or more responses each, sampled from the policy -> labeled by an AI judge following a
constitution -> a preference dataset (`pairs.jsonl` or `pairs.parquet`: TRL's conversational format plus the
labeler's metadata), ready for DPO. The judge is first audited on held-out human pairs of the data, when it has any.
Under `accelerate launch` the prompts, then the comparisons, are sharded across processes and gathered in order."""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path

from accelerate.utils import gather_object
from omegaconf import DictConfig

from trl_ext.config import node_kwargs, to_dict
from trl_ext.data import load_preferences, load_prompts
from trl_ext.exceptions import DataError
from trl_ext.models import load_policy, load_tokenizer, model_path
from trl_ext.rlaif import Constitution, ConstitutionalLabeler, audit_judge, label_responses, plot_calibration, save_rows
from trl_ext.sampling import BestOfNSampler
from trl_ext.stages.folder import Stage
from trl_ext.stages.lifecycle import PAIRS, StageOutput, peak_rss_gib, run_stage, write_json

log = logging.getLogger(__name__)


def load_model(node: DictConfig, device):
    path = model_path(node)
    tokenizer = load_tokenizer(path, trust_remote_code=node.trust_remote_code, revision=node.get("revision"))
    model = load_policy(path, tokenizer, trust_remote_code=node.trust_remote_code, revision=node.get("revision"))
    return model.to(device), tokenizer


def audit(cfg: DictConfig, labeler: ConstitutionalLabeler) -> dict | None:
    """The judge on up to `audit_pairs` held-out human-labeled pairs of the data (None: none, or no such pairs)."""
    if not cfg.audit_pairs:
        return None
    try:
        pairs = load_preferences(**node_kwargs(cfg.data))[0]["eval"]
    except DataError as err:
        log.warning("Judge not audited: the data has no usable human preference pairs (%s)", str(err).splitlines()[0])
        return None
    pairs = pairs.select(range(min(cfg.audit_pairs, len(pairs))))
    result = audit_judge(labeler, pairs["prompt"], pairs["chosen"], pairs["rejected"], distributed=True)
    log.info(
        "Judge against people on %d held-out pairs: agreement %.3f, position-bias rate %s",
        result["pairs"],
        result["agreement"],
        result["position_bias_rate"],
    )
    return result


def label(cfg: DictConfig, stage: Stage):
    """Sample, audit the judge, label; then the metrics and the writer of the stage's files."""
    state = stage.state
    constitution = Constitution.from_config(cfg.constitution)  # a bad file fails before any model loads
    prompts = list(load_prompts(**node_kwargs(cfg.data))[0]["train"]["prompt"])[: cfg.max_prompts]
    sampling = to_dict(cfg.sampling)
    began = time.perf_counter()
    policy, tokenizer = load_model(cfg.model, state.device)
    sampler = BestOfNSampler(policy, tokenizer, [], generation_kwargs=sampling.pop("generation"), **sampling)
    with state.split_between_processes(prompts) as shard:  # contiguous shards: gathering keeps the order
        responses = gather_object(sampler.generate(shard))
    del policy, sampler
    gc.collect()
    judge, judge_tokenizer = load_model(cfg.judge if cfg.judge.source else cfg.model, state.device)
    labeler = ConstitutionalLabeler(judge, constitution, judge_tokenizer, **to_dict(cfg.labeler))
    judge_audit = audit(cfg, labeler)
    start = time.perf_counter()
    rows, comparisons, counts = label_responses(
        labeler, prompts, responses, distributed=True, **to_dict(cfg.preferences)
    )
    seconds = time.perf_counter() - start
    if not rows:
        raise DataError(
            f"RLAIF produced no preference pairs ({dict(counts)}). Ties dropped? Lower labeler.tie_threshold or set "
            "preferences.ties=keep; identical samples? Raise sampling.generation.temperature or sampling.n."
        )
    metrics = {
        **counts,
        "judge": labeler.name,
        "constitution": constitution.name,
        "comparisons_per_second": len(comparisons) / seconds,
        "mean_margin": sum(row["margin"] for row in rows) / len(rows),
        "position_flip_rate": sum(c["position_flip"] for c in comparisons) / len(comparisons),
        **{key: sum(c[key] for c in comparisons) for key in ("truncated", "suspect_injection")},
        "runtime": time.perf_counter() - began,  # seconds of sampling, auditing and labeling
        "peak_rss_gib": peak_rss_gib(),
    }
    if judge_audit:
        metrics.update(human_agreement=judge_audit["agreement"], human_position_bias=judge_audit["position_bias_rate"])

    def write(out: Path) -> None:
        if state.is_main_process:
            save_rows(rows, out / f"pairs.{cfg.output_format}")
            save_rows(comparisons, out / "comparisons.jsonl")
            write_json(out, {"constitution.json": constitution.to_dict(), "metrics.json": metrics})
            if judge_audit:
                write_json(out, {"audit.json": judge_audit})
                plot_calibration(judge_audit, out / "calibration.png")

    return metrics, write


def run(cfg: DictConfig, run_dir: str | Path, name: str = "rlaif") -> StageOutput:
    return run_stage(cfg, run_dir, name, PAIRS, lambda stage: label(cfg, stage))
