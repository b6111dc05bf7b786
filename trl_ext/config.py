"""From a config node (Hydra YAML, or a plain dict) to the objects the libraries take: a TRL config, a peft config,
keyword arguments. Usable without Hydra."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from trl_ext.exceptions import ConfigError
from trl_ext.utils.device import fill_precision

ConfigT = TypeVar("ConfigT")


def to_dict(node: DictConfig | dict | None) -> dict[str, Any]:
    """A config node as a plain (resolved) dict; None as {}."""
    if node is None:
        return {}
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)


def node_kwargs(node: DictConfig | dict, drop: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    """A config node as keyword arguments, without its labels (`name` is for folder names only)."""
    return {k: v for k, v in to_dict(node).items() if k not in drop}


def trainer_config(config_cls: type[ConfigT], node: DictConfig | dict, output_dir: str | Path, **fixed) -> ConfigT:
    """A TRL config (DPOConfig, RewardConfig, SFTConfig, ...) from the YAML `trainer` node, passed through whole.

    Every TRL field is therefore overridable from the command line; unknown keys raise TRL's own error. Device and
    precision left unset (null) are chosen for the machine (see `fill_precision`).
    """
    kwargs = fill_precision({**to_dict(node), **fixed})
    try:
        return config_cls(output_dir=str(output_dir), **kwargs)
    except TypeError as err:  # a misspelled field: name it, and where the valid names are documented
        where = f"{config_cls.__module__.split('.')[0]}.{config_cls.__name__}"
        raise ConfigError(f"trainer: {err}. Valid fields are those of {where}.") from err


def peft_config(node: DictConfig | dict | None, task_type: str = "CAUSAL_LM", model=None):
    """A peft `LoraConfig` from the `peft` node (`peft=none` gives None: full fine-tuning).

    `top_layers: k` (ours, not peft's) puts the adapters on the model's last k blocks only (`model` is needed to count
    them): backpropagation then stops at the lowest adapted block, so with `trainer.gradient_checkpointing=false` a
    step costs about a forward pass plus a backward through k blocks (scripts/bench_quality.py measures the gain).
    """
    kwargs = to_dict(node)
    if not kwargs:
        return None
    from peft import LoraConfig

    top = kwargs.pop("top_layers", None)
    if top is not None:
        kwargs.update(top_layer_targets(model, top, kwargs.get("target_modules")))
    if task_type == "SEQ_CLS":  # the fresh score head must train too
        kwargs.setdefault("modules_to_save", ["score"])
    return LoraConfig(task_type=task_type, **kwargs)


def top_layer_targets(model, top_layers: int, target_modules: str | list[str] | None) -> dict[str, Any]:
    """peft's `layers_to_transform` for the last `top_layers` blocks of `model`, with "all-linear" spelled out as the
    blocks' linear layers (peft refuses a string of targets beside layer indices)."""
    import torch

    if model is None:
        raise ConfigError("peft.top_layers: needs the model to count its blocks")
    n_layers = model.config.get_text_config().num_hidden_layers
    if isinstance(top_layers, bool) or not isinstance(top_layers, int) or not 0 < top_layers <= n_layers:
        raise ConfigError(f"peft.top_layers: {top_layers!r} is not a block count between 1 and {n_layers}")
    if target_modules in (None, "all-linear"):
        in_blocks = re.compile(r"\.\d+\.")  # a numbered block: model.layers.3.self_attn.q_proj
        target_modules = sorted(
            {
                name.rsplit(".", 1)[-1]
                for name, module in model.named_modules()
                if isinstance(module, torch.nn.Linear) and in_blocks.search(name)
            }
        )
    elif isinstance(target_modules, str):
        raise ConfigError("peft.top_layers: give target_modules as a list of names (or all-linear), not a regex")
    return {"layers_to_transform": list(range(n_layers - top_layers, n_layers)), "target_modules": target_modules}
