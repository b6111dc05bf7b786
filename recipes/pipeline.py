"""Chain stages in one run folder, each starting from the previous policy, then evaluate them all.

    python recipes/pipeline.py                      # SFT -> DPO -> evaluation on the embedded SmolLM2
    python recipes/pipeline.py model=tiny dpo.trainer.beta=0.2
    python recipes/pipeline.py data=hh_rlhf data.path=../shared/data/hh-rlhf/harmless-base-test.shared.jsonl.gz
    python recipes/pipeline.py pipeline=sft_rlaif_dpo  # SFT -> AI-labeled pairs by a constitution -> DPO

Rerunning the same command skips complete stages and resumes an interrupted one; +force=true redoes them all.
"""

from pathlib import Path

import bon
import dpo
import eval as evaluation
import hydra
import ppo
import reward
import rlaif
import sft
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from trl_ext.errors import ConfigError, report_user_errors
from trl_ext.rlaif import report_section
from trl_ext.training import to_dict

STAGES = {"sft": sft.run, "reward": reward.run, "dpo": dpo.run, "ppo": ppo.run, "bon": bon.run, "rlaif": rlaif.run}
POLICY_STAGES = {"sft", "dpo", "ppo"}  # their output is the next stage's starting model
PAIR_STAGES = {"bon", "rlaif"}  # their pairs file is what the next dpo stage trains on


def stage_config(cfg: DictConfig, stage: str, model: dict, latest: dict[str, str]) -> DictConfig:
    """What one stage sees: the shared model/data/peft/seed and its own node (`<stage>.trainer`, or the best-of-N
    settings); PPO and best-of-N get the latest reward model, RLAIF's judge is the starting model unless set, and DPO
    after best-of-N or RLAIF trains on their latest pairs."""
    if stage not in cfg:
        raise ConfigError(
            f"pipeline.stages: this pipeline config has no {stage} settings (the rlaif stage's come with "
            "pipeline=sft_rlaif_dpo)"
        )
    node = {
        "model": model,
        "data": to_dict(cfg.data),
        "peft": to_dict(cfg.peft),
        "seed": cfg.seed,
        "force": cfg.get("force", False),
        **to_dict(cfg[stage]),
    }
    if stage in ("ppo", "bon"):
        if "reward" not in latest:
            raise ConfigError(f"pipeline.stages: the {stage} stage needs a reward stage before it")
        node["reward_model"] = latest["reward"]
    if stage == "rlaif" and not node["judge"].get("source"):
        node["judge"] = to_dict(cfg.model)  # the starting model judges, not the policy being trained
    if stage == "dpo" and "pairs" in latest:
        source = Path(latest["pairs"]).parent.name.split("_")[0]
        pairs = {"name": f"{source}_pairs", "path": latest["pairs"], "format": "conversational"}
        node["data"] = {**node["data"], **pairs, "on_invalid": "error", "max_rows": None}
    return OmegaConf.create(node)


@hydra.main(version_base="1.3", config_path="../conf", config_name="pipeline")
@report_user_errors
def main(cfg: DictConfig) -> None:
    run_dir = HydraConfig.get().runtime.output_dir
    model, latest, outputs = to_dict(cfg.model), {}, {}
    for stage in cfg.pipeline.stages:
        if stage not in STAGES:
            raise ConfigError(f"pipeline.stages: unknown stage {stage!r}; known: {sorted(STAGES)}")
        name = stage if stage not in outputs else f"{stage}_{sum(s.split('_')[0] == stage for s in outputs) + 1}"
        latest[stage] = outputs[name] = str(STAGES[stage](stage_config(cfg, stage, model, latest), run_dir, name))
        if stage in POLICY_STAGES:
            model = {**model, "source": "pretrained", "path": latest[stage]}
        if stage in PAIR_STAGES:
            latest["pairs"] = f"{latest[stage]}/pairs.{cfg[stage].get('output_format', 'jsonl')}"
    title = (
        f"Pipeline {cfg.pipeline.name}: {' -> '.join(cfg.pipeline.stages)} on {cfg.model.name}, data {cfg.data.name}"
    )
    models = {k: v for k, v in outputs.items() if k.split("_")[0] not in PAIR_STAGES}  # pair stages make no model
    judged = [line for name, out in outputs.items() if name.split("_")[0] == "rlaif" for line in report_section(out)]
    evaluation.run(cfg, run_dir, models, title=title, sections=judged)


if __name__ == "__main__":
    main()
