"""The private names of TRL, transformers and accelerate that trl_ext relies on, each touched only here and each with a
contract: a check that fails, naming the hook and the installed versions, when an upstream release changes it
(`tests/test_compat.py` runs every check; `verify_all()` does the same at run time).

Why private names at all: LeanDPOTrainer and R-DPO extend TRL's DPOTrainer between its data preparation, reference
pass and loss, and TRL offers no public extension points there; the labeler repeats a KV cache per row; evaluation
after a ZeRO-3 stage loads whole models while DeepSpeed's config is still registered; and the embedded GGUF model
must be saved as plain safetensors.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from trl import DPOTrainer

PACKAGES = ("trl", "transformers", "accelerate", "peft", "datasets", "torch")


def installed_versions() -> str:
    """'trl 1.16.0, transformers 5.24.0, ...' for error messages."""

    def one(name: str) -> str:
        try:
            return f"{name} {version(name)}"
        except PackageNotFoundError:
            return f"{name} (not installed)"

    return ", ".join(one(name) for name in PACKAGES)


class HookChanged(RuntimeError):
    """An upstream private name trl_ext relies on is gone or changed shape."""


@dataclass(frozen=True)
class Hook:
    """One private upstream name: what it is, who in trl_ext uses it, and the check of its contract."""

    name: str
    used_by: str
    check: Callable[[], None]

    def verify(self) -> None:
        try:
            self.check()
        except Exception as err:  # noqa: BLE001 - any failure of the check means the contract is broken
            raise HookChanged(
                f"trl_ext relies on {self.name} (used by {self.used_by}), which changed in the installed versions "
                f"({installed_versions()}): {type(err).__name__}: {err}. Install a version in the range pyproject.toml "
                "pins, or adapt trl_ext/_compat/hooks.py."
            ) from err


HOOKS: list[Hook] = []


def contract(name: str, used_by: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    def register(check: Callable[[], None]) -> Callable[[], None]:
        HOOKS.append(Hook(name, used_by, check))
        return check

    return register


def verify_all() -> None:
    """Raise `HookChanged` for the first hook whose contract the installed libraries break."""
    for hook in HOOKS:
        hook.verify()


def _parameters(fn: Callable) -> list[str]:
    return list(inspect.signature(fn).parameters)


def _source_has(obj: Any, *snippets: str) -> None:
    source = inspect.getsource(obj)
    missing = [s for s in snippets if s not in source]
    if missing:
        raise AssertionError(f"{getattr(obj, '__qualname__', obj)} no longer contains {missing}")


# ---- TRL's DPOTrainer: extension points between data preparation, reference pass and loss ----------------------


@contract("trl.DPOTrainer._precompute_ref_logps(dataset, name, batch_size)", "R-DPO's reference shift, lean heads")
def _check_precompute() -> None:
    assert _parameters(DPOTrainer._precompute_ref_logps) == ["self", "dataset", "name", "batch_size"]
    _source_has(DPOTrainer, "ref_chosen_logps", "ref_rejected_logps", "self._precompute_ref_logps(")


@contract("trl.DPOTrainer._prepare_dataset(dataset, processing_class, args, dataset_name)", "length grouping")
def _check_prepare() -> None:
    assert _parameters(DPOTrainer._prepare_dataset) == ["self", "dataset", "processing_class", "args", "dataset_name"]
    _source_has(DPOTrainer, "prompt_ids", "chosen_ids", "rejected_ids")


@contract("transformers.Trainer._set_signature_columns_if_needed / _signature_columns", "length grouping")
def _check_signature_columns() -> None:
    from transformers import Trainer

    assert _parameters(Trainer._set_signature_columns_if_needed) == ["self"]
    _source_has(Trainer._set_signature_columns_if_needed, "self._signature_columns")


@contract("trl.DPOTrainer._metrics[mode][key] (lists of logged values)", "LeanDPOTrainer's padding_fraction")
def _check_metrics() -> None:
    _source_has(DPOTrainer.__init__, "self._metrics = ")
    _source_has(DPOTrainer.log, "self._metrics[mode]")


@contract("trl's fused LM head: model(..., labels=, fused_lm_head=True) -> FusedCausalLMOutput", "trl_ext.logprobs")
def _check_fused_head() -> None:
    from trl.trainer.utils import FusedCausalLMOutput

    names = {f.name for f in fields(FusedCausalLMOutput)}
    assert {"loss", "log_probs", "entropy", "mean_logits", "is_top1"} <= names, names
    _source_has(DPOTrainer, "add_fused_lm_head(", "fused_lm_head=True")


class DPOTrainerHooks(DPOTrainer):
    """TRL's DPOTrainer with its private extension points under public names, so that trl_ext's subclasses never
    override or read a private name themselves:

    - `after_ref_logps(dataset, name)`: the dataset right after TRL precomputed its reference log-probs;
    - `before_ref_logps()`: called before the reference pass;
    - `after_prepare_dataset(dataset, args, name)`: the dataset right after TRL tokenized it (called from TRL's
      `__init__`, before `self.args` exists);
    - `extra_signature_columns()`: more columns the model's collator must keep;
    - `log_metric(key, value)`: one value for TRL's logged means (train or eval, by the model's mode).
    """

    def after_ref_logps(self, dataset, name: str):
        return dataset

    def before_ref_logps(self) -> None:
        pass

    def after_prepare_dataset(self, dataset, args, name: str):
        return dataset

    def extra_signature_columns(self) -> list[str]:
        return []

    def log_metric(self, key: str, value: float) -> None:
        self._metrics["train" if self.model.training else "eval"][key].append(value)

    def _precompute_ref_logps(self, dataset, name, batch_size):
        self.before_ref_logps()
        return self.after_ref_logps(super()._precompute_ref_logps(dataset, name, batch_size), name)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        prepared = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        return self.after_prepare_dataset(prepared, args, dataset_name)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        extra = [c for c in self.extra_signature_columns() if c not in self._signature_columns]
        self._signature_columns = [*self._signature_columns, *extra]


# ---- TRL's experimental utilities: the reference copy -----------------------------------------------------------


@contract("trl.experimental.utils.create_reference_model(model, ...)", "trl_ext.models.heads.reference_copy")
def _check_reference_model() -> None:
    from trl.experimental.utils import create_reference_model

    assert _parameters(create_reference_model)[0] == "model"


# ---- transformers' DeepSpeed integration: load whole models while a ZeRO-3 config is registered -------------------


@contract("transformers.integrations.deepspeed._hf_deepspeed_config_weak_ref", "trl_ext.distributed.full_weights")
def _check_zero3_config() -> None:
    import transformers.integrations.deepspeed as hf_deepspeed

    assert hasattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref")
    assert _parameters(hf_deepspeed.set_hf_deepspeed_config) == ["hf_deepspeed_config_obj"]
    assert callable(hf_deepspeed.unset_hf_deepspeed_config)


@contextmanager
def zero3_init_suspended() -> Iterator[None]:
    """Models load whole inside this block even when a ZeRO-3 trainer registered its config for the process
    (transformers then partitions every model at load time); the config is registered again afterwards."""
    import sys

    hf_deepspeed = sys.modules.get("transformers.integrations.deepspeed")
    if hf_deepspeed is None:  # never imported, so no ZeRO-3 config is set (importing it costs ~200 MiB of memory)
        yield
        return
    ref = hf_deepspeed._hf_deepspeed_config_weak_ref  # transformers keeps no other handle on it
    config = ref() if ref is not None else None
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if config is not None:
            hf_deepspeed.set_hf_deepspeed_config(config)


# ---- transformers' KV cache: one prefix computed once, continued by several rows ----------------------------------


@contract("transformers.DynamicCache.batch_repeat_interleave(repeats)", "trl_ext.rlaif (shared judge prefixes)")
def _check_cache_repeat() -> None:
    from transformers import DynamicCache

    assert _parameters(DynamicCache.batch_repeat_interleave) == ["self", "repeats"]


def repeat_cache(cache, repeats: int) -> None:
    """Repeat every row of a KV cache `repeats` times, in place (row i becomes rows i*r .. i*r + r - 1). Raises
    AttributeError for a cache that cannot be repeated (the caller then runs whole rows)."""
    cache.batch_repeat_interleave(repeats)


# ---- transformers' quantizer state: a GGUF-loaded model saved as plain safetensors ----------------------------------


@contract("PreTrainedModel.hf_quantizer / is_quantized / config.quantization_config", "the embedded model's cache")
def _check_quantizer_state() -> None:
    from transformers import PreTrainedModel

    _source_has(PreTrainedModel.save_pretrained, "hf_quantizer")


def drop_quantization_state(model) -> None:
    """Forget that `model` was loaded from a quantized file: GGUF weights are de-quantised to float32 on load, and only
    these markers make `save_pretrained` refuse ("quantized with gguf and is not serializable")."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
