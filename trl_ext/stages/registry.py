"""Every stage a pipeline can chain, in one place: its function, what it makes, and what it takes from the stages
before it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from trl_ext.stages import bon, dpo, ppo, reward, rlaif, sft
from trl_ext.stages.lifecycle import PAIRS, POLICY, REWARD_MODEL, StageOutput


@dataclass(frozen=True)
class StageSpec:
    """`run(cfg, run_dir, name) -> StageOutput`; `makes` one of POLICY, REWARD_MODEL, PAIRS. In a pipeline every
    stage starts from the latest policy; `needs_reward_model`: it scores with the latest reward model (an error if
    there is none before it); `trains_on_pairs`: it trains on the latest pair stage's pairs when there is one;
    `judge_is_start_model`: its `judge` node, when unset, is the pipeline's starting model."""

    run: Callable[[DictConfig, str | Path, str], StageOutput]
    makes: str
    needs_reward_model: bool = False
    trains_on_pairs: bool = False
    judge_is_start_model: bool = False


STAGES: dict[str, StageSpec] = {
    "sft": StageSpec(sft.run, POLICY),
    "reward": StageSpec(reward.run, REWARD_MODEL),
    "dpo": StageSpec(dpo.run, POLICY, trains_on_pairs=True),
    "ppo": StageSpec(ppo.run, POLICY, needs_reward_model=True),
    "bon": StageSpec(bon.run, PAIRS, needs_reward_model=True),
    "rlaif": StageSpec(rlaif.run, PAIRS, judge_is_start_model=True),
}
