"""Evaluation metrics against hand computations; the report's files."""

import json

import pytest
import torch

from trl_ext.eval import completion_logps, evaluate_models, is_reward_model, preference_metrics, write_report
from trl_ext.models import load_reward_model

PROMPT = [{"role": "user", "content": "How do I boil an egg?"}]
ANSWER = [{"role": "assistant", "content": "Simmer it for nine minutes."}]


def test_completion_logps_matches_a_direct_computation(tiny_model, tiny_tokenizer):
    tok = tiny_tokenizer
    prompt_text = tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    full_text = tok.apply_chat_template(PROMPT + ANSWER, tokenize=False)
    prompt_ids = tok(prompt_text, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([tok(full_text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logps = torch.log_softmax(tiny_model(ids).logits[0, :-1].double(), -1)
    expected = sum(logps[t - 1, ids[0, t]].item() for t in range(len(prompt_ids), ids.shape[1]))
    # batched with a longer neighbour (padding) must not change the value
    got = completion_logps(tiny_model, tok, [PROMPT, PROMPT + PROMPT], [ANSWER, ANSWER + ANSWER], batch_size=2)
    assert got[0].item() == pytest.approx(expected, abs=1e-4)


def test_truncation_cuts_the_prompt_and_keeps_the_completion(tiny_model, tiny_tokenizer):
    from trl_ext.chat import encode_completion

    long_prompt = [{"role": "user", "content": "word " * 300}]
    whole, n = encode_completion(tiny_tokenizer, long_prompt, ANSWER, max_length=2000)
    cut, n_cut = encode_completion(tiny_tokenizer, long_prompt, ANSWER, max_length=40)
    assert len(whole) > 300 and len(cut) == 40 and n_cut == n and cut == whole[-40:]  # the prompt's start went
    with torch.no_grad():
        logps = torch.log_softmax(tiny_model(torch.tensor([cut])).logits[0, :-1].double(), -1)
    expected = sum(logps[t - 1, cut[t]].item() for t in range(40 - n, 40))
    got = completion_logps(tiny_model, tiny_tokenizer, [long_prompt], [ANSWER], max_length=40)
    assert got.item() == pytest.approx(expected, abs=1e-4)


def test_preference_metrics_by_hand():
    m = preference_metrics(torch.tensor([1.0, 0.0, 3.0, 2.0]), torch.tensor([0.0, 1.0, 1.0, 2.0]))
    assert m == {"accuracy": 0.5, "margin": 0.5, "chosen": 1.5, "rejected": 1.0}


def test_evaluate_policy_and_reward_model(tmp_path, tiny_path, tiny_tokenizer):
    from datasets import Dataset

    pairs = Dataset.from_list(
        [{"prompt": PROMPT, "chosen": ANSWER, "rejected": [{"role": "assistant", "content": "No."}]}] * 3
    )
    rm_dir = tmp_path / "rm"
    load_reward_model(tiny_path, tiny_tokenizer).save_pretrained(rm_dir)
    tiny_tokenizer.save_pretrained(rm_dir)
    assert is_reward_model(rm_dir) and not is_reward_model(tiny_path)
    result = evaluate_models({"same": tiny_path, "rm": str(rm_dir)}, tiny_path, pairs, n_generate=2, max_new_tokens=4)
    same, rm = result["models"]["same"], result["models"]["rm"]
    # a policy identical to its reference has zero implicit reward everywhere
    assert same["implicit_margin"] == 0 and same["implicit_accuracy"] == 0 and same["kl_proxy"] == 0
    assert rm["kind"] == "reward" and set(rm) >= {"accuracy", "margin"}
    report = write_report(tmp_path, result, {"dpo": [{"step": 1, "loss": 0.7}, {"step": 2, "loss": 0.6}]}, "T")
    text = report.read_text()
    assert "| same |" in text and "| rm |" in text and "training_curves.png" in text
    assert (tmp_path / "training_curves.png").stat().st_size > 1000 and (tmp_path / "lengths.png").exists()
    assert "## Length diagnostics" in text and abs(same["length_pearson"]) <= 1 and "rejected" in result["lengths"]
    assert json.loads((tmp_path / "metrics.json").read_text())["n_pairs"] == 3


def test_training_curves_of_many_stages_wrap_into_bands(tmp_path):
    """Nine stages (docs/results.md's pipeline) plot four to a band, not nine panels wide; a stage that logged no loss
    gets no panel."""
    from PIL import Image

    from trl_ext.eval import plot_training

    history = [{"step": s, "loss": 1 / s, "eval_rewards/accuracies": 0.5 + s / 100} for s in range(1, 6)]
    histories = {f"stage{i}": history for i in range(9)} | {"bon": [{"step": 1, "mean_score": 0.1}]}
    with Image.open(plot_training(histories, tmp_path / "curves.png")) as image:
        width, height = image.size
    one = plot_training({"dpo": history}, tmp_path / "one.png")
    with Image.open(one) as image:
        panel_width, band_height = image.size
    assert width == 4 * panel_width and height == 3 * band_height  # 4 columns, 3 bands of loss and accuracy rows
    assert plot_training({"bon": histories["bon"]}, tmp_path / "none.png") is None
