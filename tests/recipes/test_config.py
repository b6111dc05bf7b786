"""Every primary config composes; trainer nodes become TRL configs whole; overrides and typos behave."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.conftest import REPO
from trl_ext._compat import DPOConfig, RewardConfig, SFTConfig
from trl_ext.errors import ConfigError
from trl_ext.training import peft_config, trainer_config

PRIMARY = ["sft", "reward", "dpo", "eval", "pipeline", "rlaif", "ppo", "bon"]
TRL_CONFIGS = {"sft": SFTConfig, "reward": RewardConfig, "dpo": DPOConfig}


def make(name: str, *overrides: str):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose(name, overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize("name", PRIMARY)
@pytest.mark.parametrize("model", ["smollm2", "tiny"])
def test_primary_configs_compose(name, model):
    cfg = make(name, f"model={model}")
    assert cfg.model.name == model and cfg.data.name == "demo"
    OmegaConf.resolve(cfg)  # every interpolation resolves
    assert "${now" not in OmegaConf.to_yaml(cfg.hydra.run)  # run folder never depends on the clock (ranks agree)


@pytest.mark.parametrize("stage, cls", TRL_CONFIGS.items())
def test_trainer_nodes_are_trl_configs(stage, cls, tmp_path):
    cfg = make(stage)
    args = trainer_config(cls, cfg.trainer, tmp_path)
    assert isinstance(args, cls) and args.output_dir == str(tmp_path) and args.seed == cfg.seed
    assert args.use_cpu is not None and args.bf16 is not None


def test_any_trl_field_is_overridable(tmp_path):
    cfg = make("dpo", "trainer.beta=0.2", "trainer.loss_type=[ipo]", "+trainer.label_smoothing=0.1")
    args = trainer_config(DPOConfig, cfg.trainer, tmp_path)
    assert (args.beta, args.loss_type, args.label_smoothing) == (0.2, ["ipo"], 0.1)


def test_pipeline_stage_overrides(tmp_path):
    cfg = make("pipeline", "dpo.trainer.beta=0.3", "sft.trainer.max_steps=2", "pipeline=sft_rm")
    assert cfg.dpo.trainer.beta == 0.3 and cfg.evaluation.beta == 0.3 and cfg.sft.trainer.max_steps == 2
    assert list(cfg.pipeline.stages) == ["sft", "reward"]


def test_pipeline_stages_share_the_recipes_settings():
    """pipeline=sft_rlaif_dpo's rlaif node and the dpo node's lean switches come from the groups the recipes use."""
    recipe, pipeline = make("rlaif"), make("pipeline", "pipeline=sft_rlaif_dpo")
    assert pipeline.rlaif.labeler == recipe.labeler and pipeline.rlaif.judge == recipe.judge
    assert pipeline.rlaif.constitution == recipe.constitution and pipeline.rlaif.preferences == recipe.preferences
    assert pipeline.rlaif.sampling.generation.max_new_tokens == 48  # the pipeline's own, smaller round
    assert make("pipeline").dpo.lean == make("dpo").lean
    assert make("dpo", "lean=off").lean.chunked_logps is False


def test_misspelled_trainer_field_names_the_config(tmp_path):
    cfg = make("dpo", "+trainer.betta=0.2")
    with pytest.raises(ConfigError, match="betta.*trl.DPOConfig"):
        trainer_config(DPOConfig, cfg.trainer, tmp_path)


def test_peft_groups():
    assert peft_config(make("dpo", "peft=none").peft) is None
    lora = peft_config(make("dpo", "peft.r=4").peft)
    assert lora.r == 4 and lora.task_type == "CAUSAL_LM"
    assert "score" in peft_config(make("reward").peft, task_type="SEQ_CLS").modules_to_save


def test_accelerate_cpu_config_exists():
    assert OmegaConf.load(Path(REPO, "conf/accelerate/cpu.yaml")).use_cpu is True
