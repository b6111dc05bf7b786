"""Best-of-N stage: prompts -> N samples each from the policy -> scored by a reward model -> best responses,
preference pairs (`pairs.jsonl`) and the reward-versus-KL picture. Under `accelerate launch` the prompts are sharded
across processes and the results gathered in their original order."""

from __future__ import annotations

import json
import time
from pathlib import Path

from accelerate.utils import gather_object
from omegaconf import DictConfig

from trl_ext.config import node_kwargs, to_dict
from trl_ext.data import load_prompts
from trl_ext.distributed import full_weights
from trl_ext.models import load_policy, load_reward_model, load_tokenizer, model_path
from trl_ext.rewards import RewardModelScorer
from trl_ext.sampling import BestOfNSampler, best_of_n_curve, plot_best_of_n, preference_pairs
from trl_ext.stages.folder import Stage
from trl_ext.stages.lifecycle import PAIRS, StageOutput, peak_rss_gib, run_stage, write_json


def sample(cfg: DictConfig, stage: Stage):
    """Sample and score (every process its shard), then the metrics and the writer of the stage's files."""
    state = stage.state
    path = model_path(cfg.model)
    tokenizer = load_tokenizer(path, trust_remote_code=cfg.model.trust_remote_code)
    prompts = list(load_prompts(**node_kwargs(cfg.data))[0]["train"]["prompt"])[: cfg.max_prompts]
    rm_tokenizer = load_tokenizer(cfg.reward_model)
    sampling = to_dict(cfg.sampling)
    with full_weights():  # each process samples its own prompts with a whole copy (also after a ZeRO-3 stage)
        policy, reward_model = load_policy(path, tokenizer), load_reward_model(cfg.reward_model, rm_tokenizer)
    prompt_length = sampling.get("max_prompt_length")  # the reward model reads what the policy answered
    limit = {"max_length": prompt_length + sampling["generation"]["max_new_tokens"]} if prompt_length else {}
    sampler = BestOfNSampler(
        policy.to(state.device),
        tokenizer,
        RewardModelScorer(reward_model.to(state.device), rm_tokenizer, **limit),
        generation_kwargs=sampling.pop("generation"),
        **sampling,
    )
    start = time.perf_counter()
    with state.split_between_processes(prompts) as shard:  # contiguous shards: gathering keeps the order
        results = gather_object(sampler(shard))
    runtime = time.perf_counter() - start
    pairs, skipped = preference_pairs(results, **to_dict(cfg.pairs))
    curve = best_of_n_curve(results)
    metrics = {
        "prompts": len(results),
        "n": cfg.sampling.n,
        "pairs": len(pairs),
        "prompts_without_pair": skipped,
        "mean_score": sum(sum(r.scores) / len(r.scores) for r in results) / len(results),
        "mean_best_score": sum(r.best_score for r in results) / len(results),
        "curve": curve,
        "runtime": runtime,  # seconds of sampling and scoring
        "peak_rss_gib": peak_rss_gib(),
    }

    def write(out: Path) -> None:
        if state.is_main_process:
            for file, rows in (("best.jsonl", [r.to_dict() for r in results]), ("pairs.jsonl", pairs)):
                (out / file).write_text("".join(json.dumps(row) + "\n" for row in rows))
            write_json(out, {"metrics.json": metrics})
            plot_best_of_n(curve, out / "bon_curve.png")

    return metrics, write


def run(cfg: DictConfig, run_dir: str | Path, name: str = "bon") -> StageOutput:
    return run_stage(cfg, run_dir, name, PAIRS, lambda stage: sample(cfg, stage))
