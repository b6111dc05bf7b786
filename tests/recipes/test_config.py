"""Every primary config composes; trainer nodes become TRL configs whole; overrides and typos behave."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import REPO, compose
from trl_ext._compat import DPOConfig, RewardConfig, SFTConfig
from trl_ext.config import peft_config, trainer_config
from trl_ext.exceptions import ConfigError

PRIMARY = ["sft", "reward", "dpo", "eval", "pipeline", "rlaif", "ppo", "bon"]
TRL_CONFIGS = {"sft": SFTConfig, "reward": RewardConfig, "dpo": DPOConfig}


def make(name: str, *overrides: str):
    return compose(name, *overrides, hydra=True)


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


BLOCK_LINEARS = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


@pytest.mark.parametrize("task_type", ["CAUSAL_LM", "SEQ_CLS"])
def test_top_layers_adapts_only_the_last_blocks(tiny_path, tiny_tokenizer, task_type):
    from peft import get_peft_model

    from trl_ext.models import load_policy, load_reward_model

    model = (load_reward_model if task_type == "SEQ_CLS" else load_policy)(tiny_path, tiny_tokenizer)
    lora = peft_config(make("dpo", "peft.top_layers=1").peft, task_type=task_type, model=model)
    assert (lora.layers_to_transform, sorted(lora.target_modules)) == ([1], BLOCK_LINEARS)  # the tiny model has 2
    trained = [name for name, p in get_peft_model(model, lora).named_parameters() if p.requires_grad]
    adapters = [name for name in trained if "lora_" in name]
    assert len(adapters) == 2 * len(BLOCK_LINEARS) and all(".layers.1." in name for name in adapters)
    assert any("score" in name for name in trained) == (task_type == "SEQ_CLS")  # a reward model's fresh head trains


def test_top_layers_keeps_named_targets_and_refuses_what_it_cannot_place(tiny_model):
    lora = peft_config({"r": 4, "target_modules": ["q_proj", "v_proj"], "top_layers": 2}, model=tiny_model)
    assert (lora.layers_to_transform, lora.target_modules) == ([0, 1], {"q_proj", "v_proj"})
    for bad in (0, 3, True):
        with pytest.raises(ConfigError, match="top_layers.*between 1 and 2"):
            peft_config({"r": 4, "top_layers": bad}, model=tiny_model)
    with pytest.raises(ConfigError, match="not a regex"):
        peft_config({"r": 4, "target_modules": ".*proj", "top_layers": 1}, model=tiny_model)
    with pytest.raises(ConfigError, match="needs the model"):
        peft_config({"r": 4, "top_layers": 1})


@pytest.mark.parametrize("path", sorted(Path(REPO, "conf/accelerate").glob("*.yaml")), ids=lambda p: p.stem)
def test_launcher_configs_are_valid_accelerate_configs(path):
    from accelerate.commands.config.config_args import load_config_from_file

    launcher = load_config_from_file(str(path))  # accelerate's own parser: unknown keys or values raise
    assert launcher.use_cpu == path.stem.endswith("cpu")  # the *_cpu configs, and only they, run without CUDA
    if launcher.distributed_type == "DEEPSPEED":
        ds = launcher.deepspeed_config
        assert ds.get("zero_stage") in (2, 3) or Path(REPO, ds.get("deepspeed_config_file", "")).exists()


@pytest.mark.parametrize("experiment", sorted(p.stem for p in Path(REPO, "conf/experiment").glob("*.yaml")))
def test_experiment_files_compose_into_their_own_run_folder(experiment):
    cfg = make("pipeline", f"+experiment={experiment}")
    OmegaConf.resolve(cfg)
    assert cfg.data.name == "hh_rlhf" and cfg.hydra.run.dir.endswith(experiment)
    assert make("pipeline", f"+experiment={experiment}", "dpo.trainer.beta=0.3").dpo.trainer.beta == 0.3


@pytest.mark.parametrize("name", PRIMARY)
def test_debug_group_shrinks_every_recipe(name):
    cfg = make(name, "+debug=default")
    assert cfg.model.name == "tiny"
    stages = [cfg.trainer] if "trainer" in make(name) else [cfg[s].trainer for s in ("sft", "reward", "dpo", "ppo")]
    assert all(t.max_steps == 2 for t in stages) or name in ("eval", "bon", "rlaif")
    assert make(name, "+debug=default", "model=smollm2").model.name == "smollm2"  # the command line still wins
