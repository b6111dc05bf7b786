"""A pipeline: stages chained in one run folder, each starting from the latest policy and taking what it needs from
the stages before it (see `StageSpec`), then the evaluation of every model made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trl_ext.config import to_dict
from trl_ext.exceptions import ConfigError
from trl_ext.rlaif import report_section
from trl_ext.stages import evaluation
from trl_ext.stages.lifecycle import PAIRS, POLICY, REWARD_MODEL, StageOutput
from trl_ext.stages.registry import STAGES, StageSpec


def stage_config(cfg: DictConfig, stage: str, model: dict, latest: dict[str, StageOutput]) -> DictConfig:
    """What one stage sees: the shared model/data/peft/seed and its own node (`<stage>.trainer`, or the best-of-N
    settings; `<stage>.data` and `<stage>.peft` keys override the shared ones, `<stage>.peft: null` trains that stage
    in full), plus what its spec takes from the latest outputs."""
    spec: StageSpec = STAGES[stage]
    if stage not in cfg:
        raise ConfigError(
            f"pipeline.stages: this pipeline config has no {stage} settings (the rlaif stage's come with "
            "pipeline=sft_rlaif_dpo)"
        )
    own = to_dict(cfg[stage])
    shared = {"data": to_dict(cfg.data), "peft": to_dict(cfg.peft)}
    for key in shared:  # a stage's own data or peft keys refine the shared node (`sft.data.max_rows=128`)
        if key in own:
            own[key] = {} if own[key] is None and key == "peft" else {**shared[key], **(own[key] or {})}
    node: dict[str, Any] = {"model": model, **shared, "seed": cfg.seed, "force": cfg.get("force", False), **own}
    if spec.needs_reward_model:
        if REWARD_MODEL not in latest:
            raise ConfigError(f"pipeline.stages: the {stage} stage needs a reward stage before it")
        node["reward_model"] = str(latest[REWARD_MODEL].path)
    if spec.judge_is_start_model and not node["judge"].get("source"):
        node["judge"] = to_dict(cfg.model)  # the starting model judges, not the policy being trained
    if spec.trains_on_pairs and PAIRS in latest:
        pairs = latest[PAIRS]
        source = {"name": f"{pairs.name}_pairs", "path": str(pairs.pairs_file), "format": "conversational"}
        node["data"] = {**node["data"], **source, "on_invalid": "error", "max_rows": None}
    return OmegaConf.create(node)


def stage_names(entries: list[str]) -> list[tuple[str, str]]:
    """(stage, folder name) of each `pipeline.stages` entry: `dpo` is folder dpo, a repeat dpo_2, dpo_3...;
    `dpo@bon_dpo` is a dpo stage in folder bon_dpo (so pipelines that differ after a shared start can share one run
    folder: `[sft,dpo]` and `[sft,reward,bon,dpo@bon_dpo]`)."""
    out: list[tuple[str, str]] = []
    for entry in entries:
        stage, _, name = str(entry).partition("@")
        if stage not in STAGES:
            raise ConfigError(f"pipeline.stages: unknown stage {stage!r} in {entry!r}; known: {sorted(STAGES)}")
        if not name:
            repeats = sum(s == stage for s, _ in out)
            name = f"{stage}_{repeats + 1}" if repeats else stage
        if not name.isidentifier():
            raise ConfigError(f"pipeline.stages: {entry!r}: a folder name after @ is letters, digits and _")
        if any(name == n for _, n in out):
            raise ConfigError(f"pipeline.stages: two stages would write folder {name!r}: name one with @")
        out.append((stage, name))
    return out


def run(cfg: DictConfig, run_dir: str | Path) -> Path:
    """Run `cfg.pipeline.stages` in order (complete ones are skipped), then evaluate; return the report's path."""
    names = stage_names(list(cfg.pipeline.stages))
    evaluation.check_scorecard(cfg)  # a bad prompt list or template fails now, not after hours of training
    model, latest, done = to_dict(cfg.model), {}, []
    for stage, name in names:
        out = STAGES[stage].run(stage_config(cfg, stage, model, latest), run_dir, name)
        done.append((stage, out))
        latest[out.makes] = out
        if out.makes == POLICY:
            model = {**model, "source": "pretrained", "path": str(out.path)}
    title = (
        f"Pipeline {cfg.pipeline.name}: {' -> '.join(cfg.pipeline.stages)} on {cfg.model.name}, data {cfg.data.name}"
    )
    models = {out.name: out.path for _, out in done if out.makes != PAIRS}
    judged = [line for stage, out in done if stage == "rlaif" for line in report_section(out.path)]
    return evaluation.run(cfg, run_dir, models, title=title, sections=judged)
