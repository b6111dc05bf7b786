"""`model=tiny`: a tiny random-initialised Llama with a locally trained tokenizer and a ChatML template.

For tests and smoke runs: no download, seconds to train with, the same code paths as a real model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from trl_ext.utils.cache import cache_dir
from trl_ext.utils.io import atomic_dir

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY_ARCH = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    tie_word_embeddings=True,
)


def _corpus() -> list[str]:
    """Text to train the tiny BPE on: the shipped demo preference data (always present, offline)."""
    from trl_ext.data.demo import DEMO_PATH

    texts = []
    with open(DEMO_PATH, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            texts += [m["content"] for key in ("prompt", "chosen", "rejected") for m in row[key]]
    return texts


def build_tiny_tokenizer(vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Byte-level BPE (any text encodes) with ChatML special tokens; EOS `<|im_end|>`, pad `<|endoftext|>`."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        padding_side="left",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> LlamaForCausalLM:
    """A 2-layer, 64-wide Llama (~0.1 M parameters) initialised from `seed`."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        **TINY_ARCH,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def tiny_model_dir(seed: int = 0) -> Path:
    """Build the tiny model and tokenizer once into the cache (keyed by corpus, architecture and seed)."""
    from trl_ext.data.demo import DEMO_PATH

    key = hashlib.sha256(Path(DEMO_PATH).read_bytes() + json.dumps([TINY_ARCH, seed]).encode()).hexdigest()[:12]
    target = cache_dir() / f"tiny-llama-{key}"
    if (target / "config.json").exists():
        return target
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer, seed=seed)
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target
