"""RLAIF: prompts -> two or more responses each, sampled from the policy -> labeled by an AI judge following a
constitution -> a preference dataset (`pairs.jsonl` or `pairs.parquet`: TRL's conversational format plus the
labeler's metadata), ready for DPO. Under `accelerate launch` the prompts, then the comparisons, are sharded across
processes and gathered in their original order.

    python recipes/rlaif.py [model=tiny] [constitution=anthropic_rl] [sampling.n=4] [max_prompts=32]
    python recipes/rlaif.py judge.source=pretrained judge.path=Qwen/Qwen2.5-1.5B-Instruct   # a bigger judge
    python recipes/pipeline.py pipeline=sft_rlaif_dpo                                           # SFT -> RLAIF -> DPO
"""

import gc
import json
import logging
import time
from pathlib import Path

import hydra
from accelerate import PartialState
from accelerate.utils import gather_object
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from trl_ext.data import DataError, load_preferences, load_prompts
from trl_ext.errors import report_user_errors
from trl_ext.models import load_policy, load_tokenizer, model_path
from trl_ext.rlaif import Constitution, ConstitutionalLabeler, audit_judge, label_responses, plot_calibration, save_rows
from trl_ext.sampling import BestOfNSampler
from trl_ext.stages import Stage
from trl_ext.training import node_kwargs, to_dict

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


def run(cfg: DictConfig, run_dir: str | Path, name: str = "rlaif") -> Path:
    stage = Stage(run_dir, name, cfg, force=cfg.get("force", False))
    if stage.is_complete:
        return stage.output
    state = PartialState()
    constitution = Constitution.from_config(cfg.constitution)  # a bad file fails before any model loads
    prompts = list(load_prompts(**node_kwargs(cfg.data))[0]["train"]["prompt"])[: cfg.max_prompts]
    sampling = to_dict(cfg.sampling)
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
    }
    if judge_audit:
        metrics.update(human_agreement=judge_audit["agreement"], human_position_bias=judge_audit["position_bias_rate"])
    with stage.publish(metrics) as out:
        if state.is_main_process:
            save_rows(rows, out / f"pairs.{cfg.output_format}")
            save_rows(comparisons, out / "comparisons.jsonl")
            (out / "constitution.json").write_text(json.dumps(constitution.to_dict(), indent=2))
            (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
            if judge_audit:
                (out / "audit.json").write_text(json.dumps(judge_audit, indent=2))
                plot_calibration(judge_audit, out / "calibration.png")
    return stage.output


@hydra.main(version_base="1.3", config_path="../conf", config_name="rlaif")
@report_user_errors
def main(cfg: DictConfig) -> None:
    print(f"RLAIF preference pairs: {run(cfg, HydraConfig.get().runtime.output_dir)}")


if __name__ == "__main__":
    main()
