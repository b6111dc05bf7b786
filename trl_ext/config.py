"""From a config node (Hydra YAML, or a plain dict) to the objects the libraries take: a TRL config, a peft config,
keyword arguments. Usable without Hydra."""

from __future__ import annotations

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


def peft_config(node: DictConfig | dict | None, task_type: str = "CAUSAL_LM"):
    """A peft `LoraConfig` from the `peft` node (`peft=none` gives None: full fine-tuning)."""
    kwargs = to_dict(node)
    if not kwargs:
        return None
    from peft import LoraConfig

    if task_type == "SEQ_CLS":  # the fresh score head must train too
        kwargs.setdefault("modules_to_save", ["score"])
    return LoraConfig(task_type=task_type, **kwargs)
