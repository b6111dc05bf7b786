"""Chain stages in one run folder, each starting from the previous policy, then evaluate them all.

    python recipes/pipeline.py                      # SFT -> DPO -> evaluation on the embedded SmolLM2
    python recipes/pipeline.py model=tiny dpo.trainer.beta=0.2
    python recipes/pipeline.py data=hh_rlhf data.path=../shared/data/hh-rlhf/harmless-base-test.shared.jsonl.gz

Rerunning the same command skips complete stages and resumes an interrupted one; +force=true redoes them all.
"""

import dpo
import eval as evaluation
import hydra
import ppo
import reward
import sft
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from trl_ext.errors import ConfigError, report_user_errors
from trl_ext.training import to_dict

STAGES = {"sft": sft.run, "reward": reward.run, "dpo": dpo.run, "ppo": ppo.run}
POLICY_STAGES = {"sft", "dpo", "ppo"}  # their output is the next stage's starting model


def stage_config(cfg: DictConfig, stage: str, model: dict, outputs: dict[str, str]) -> DictConfig:
    """What one stage sees: the shared model/data/peft/seed, its own `<stage>.trainer` node, and for PPO the
    reward model trained earlier in the pipeline."""
    shared = {key: to_dict(cfg[key]) for key in ("data", "peft")}
    if stage == "ppo":
        if "reward" not in outputs:
            raise ConfigError("pipeline.stages: the ppo stage needs a reward stage before it")
        shared["reward_model"] = outputs["reward"]
    return OmegaConf.create(
        {
            "model": model,
            **shared,
            "trainer": to_dict(cfg[stage].trainer),
            "seed": cfg.seed,
            "force": cfg.get("force", False),
        }
    )


@hydra.main(version_base="1.3", config_path="../conf", config_name="pipeline")
@report_user_errors
def main(cfg: DictConfig) -> None:
    run_dir = HydraConfig.get().runtime.output_dir
    model, outputs = to_dict(cfg.model), {}
    for stage in cfg.pipeline.stages:
        if stage not in STAGES:
            raise ConfigError(f"pipeline.stages: unknown stage {stage!r}; known: {sorted(STAGES)}")
        outputs[stage] = str(STAGES[stage](stage_config(cfg, stage, model, outputs), run_dir))
        if stage in POLICY_STAGES:
            model = {**model, "source": "pretrained", "path": outputs[stage]}
    title = (
        f"Pipeline {cfg.pipeline.name}: {' -> '.join(cfg.pipeline.stages)} on {cfg.model.name}, data {cfg.data.name}"
    )
    evaluation.run(cfg, run_dir, outputs, title=title)


if __name__ == "__main__":
    main()
