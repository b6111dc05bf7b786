"""Our extensions of TRL's DPOTrainer. R-DPO: alpha = 0 is TRL's loss exactly; alpha > 0 subtracts
alpha * (|y_w| - |y_l|) from the margin inside the sigmoid. LeanDPOTrainer: the same losses and gradients as TRL's
from chunked log-probs of the completion tokens; length grouping and the padding fraction it logs."""

import math

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset

from trl_ext._compat import DPOConfig, DPOTrainer
from trl_ext.dpo import LeanDPOTrainer, LengthRegularizedDPOTrainer
from trl_ext.models import load_policy

PAIR = {
    "prompt": [{"role": "user", "content": "How do I boil an egg?"}],
    "chosen": [{"role": "assistant", "content": "Simmer it for nine minutes, then cool it in cold water."}],
    "rejected": [{"role": "assistant", "content": "Figure it out."}],
}


def first_loss(trainer) -> torch.Tensor:
    batch = trainer.data_collator([trainer.train_dataset[0]])
    return trainer.compute_loss(trainer.model, batch)


def build(tmp_path, tiny_path, tokenizer, cls=DPOTrainer, loss_type=("sigmoid",), rows=(PAIR,), config=None, **kwargs):
    settings = {"precompute_ref_log_probs": True, "per_device_train_batch_size": 1, "bf16": False, **(config or {})}
    args = DPOConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to="none",
        max_length=128,
        beta=0.1,
        loss_type=list(loss_type),
        gradient_checkpointing=False,
        **settings,
    )
    torch.manual_seed(0)
    model = load_policy(tiny_path, tokenizer)
    with torch.no_grad():  # move the policy away from its reference so the margin is not zero
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return cls(
        model=model, args=args, train_dataset=Dataset.from_list(list(rows)), processing_class=tokenizer, **kwargs
    )


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_alpha_zero_is_trl_dpo_exactly(tmp_path, tiny_path, tiny_tokenizer, loss_type):
    trl_loss = first_loss(build(tmp_path / "a", tiny_path, tiny_tokenizer, loss_type=(loss_type,)))
    ours = first_loss(
        build(
            tmp_path / "b",
            tiny_path,
            tiny_tokenizer,
            LengthRegularizedDPOTrainer,
            loss_type=(loss_type,),
            rdpo_alpha=0.0,
        )
    )
    assert torch.equal(trl_loss, ours)


def test_alpha_subtracts_the_length_difference_from_the_margin(tmp_path, tiny_path, tiny_tokenizer):
    plain = build(tmp_path / "a", tiny_path, tiny_tokenizer)
    alpha = 0.05
    rdpo = build(tmp_path / "b", tiny_path, tiny_tokenizer, LengthRegularizedDPOTrainer, rdpo_alpha=alpha)
    row = plain.train_dataset[0]
    length_gap = len(row["chosen_ids"]) - len(row["rejected_ids"])
    margin = math.log(1 / math.exp(-first_loss(plain).item()) - 1) * -1  # beta * delta, from -logsigmoid(m)
    expected = -F.logsigmoid(torch.tensor(margin - alpha * length_gap)).item()
    assert length_gap > 0 and first_loss(rdpo).item() == pytest.approx(expected, rel=1e-5)


def test_rdpo_evaluates_the_plain_implicit_reward(tmp_path, tiny_path, tiny_tokenizer):
    """The length term trains; validation reports beta * log(pi / pi_ref), comparable with plain DPO's."""
    eval_rows = Dataset.from_list(PAIRS)
    plain = build(tmp_path / "a", tiny_path, tiny_tokenizer, eval_dataset=eval_rows)
    rdpo = build(
        tmp_path / "b", tiny_path, tiny_tokenizer, LengthRegularizedDPOTrainer, rdpo_alpha=0.05, eval_dataset=eval_rows
    )
    for column in ("ref_chosen_logps", "ref_rejected_logps"):
        assert rdpo.eval_dataset[column] == plain.eval_dataset[column]
        assert rdpo.train_dataset[column] != plain.train_dataset[column]  # the training split is shifted
    assert rdpo.evaluate()["eval_rewards/accuracies"] == plain.evaluate()["eval_rewards/accuracies"]


def test_rdpo_refuses_settings_it_cannot_express(tmp_path, tiny_path, tiny_tokenizer):
    with pytest.raises(ValueError, match="margin losses"):
        build(tmp_path, tiny_path, tiny_tokenizer, LengthRegularizedDPOTrainer, loss_type=("ipo",), rdpo_alpha=0.1)


def pair(question: str, good: str, bad: str) -> dict:
    return {
        "prompt": [{"role": "user", "content": question}],
        "chosen": [{"role": "assistant", "content": good}],
        "rejected": [{"role": "assistant", "content": bad}],
    }


PAIRS = [
    PAIR,
    pair("Is it rude to interrupt?", "Usually, yes: let people finish first.", "Who cares."),
    pair("Hi", "Hello! How can I help you today? Ask me anything about cooking.", "What."),
]


def loss_and_grads(trainer) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    ("loss_type", "alpha", "precompute"),
    [("sigmoid", 0.0, True), ("ipo", 0.0, True), ("sigmoid", 0.05, True), ("sigmoid", 0.0, False)],
)
def test_lean_dpo_matches_trl_loss_and_gradients(tmp_path, tiny_path, tiny_tokenizer, loss_type, alpha, precompute):
    config = {"precompute_ref_log_probs": precompute}
    common = {"loss_type": (loss_type,), "rows": PAIRS, "config": config, "rdpo_alpha": alpha}
    trl = build(tmp_path / "trl", tiny_path, tiny_tokenizer, LengthRegularizedDPOTrainer, **common)
    # 4-token chunks: the chunked path really loops over chunks on these short sequences
    lean = build(tmp_path / "lean", tiny_path, tiny_tokenizer, LeanDPOTrainer, logps_chunk_tokens=4, **common)
    if precompute:
        for column in ("ref_chosen_logps", "ref_rejected_logps"):
            torch.testing.assert_close(
                torch.tensor(lean.train_dataset[column]), torch.tensor(trl.train_dataset[column]), rtol=1e-5, atol=1e-5
            )
    trl_loss, trl_grads = loss_and_grads(trl)
    lean_loss, lean_grads = loss_and_grads(lean)
    assert lean.chunked_logps and trl_loss.item() > 0
    real, slots = lean.model.slot_counts  # the 6 sequences ran packed: fewer slots than 6 padded rows
    batch = lean.data_collator([lean.train_dataset[i] for i in range(3)])
    assert real == batch["attention_mask"].sum() and slots < batch["attention_mask"].numel()
    torch.testing.assert_close(lean_loss, trl_loss, rtol=1e-5, atol=1e-6)
    assert trl_grads.keys() == lean_grads.keys() and len(trl_grads) > 10
    for name, grad in trl_grads.items():
        torch.testing.assert_close(lean_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_pack_plan_packs_first_fit_decreasing_and_unpacks_in_place():
    from trl_ext.logprobs import PackPlan

    lengths = [5, 2, 3, 4, 1]
    mask = torch.tensor([[1] * n + [0] * (5 - n) for n in lengths])
    ids = torch.arange(25).view(5, 5) * mask
    plan = PackPlan.for_batch(ids, mask)  # rows of the padded width, 5
    assert (plan.rows, plan.width, plan.real) == (3, 5, 15)  # [5], [4, 1], [3, 2]
    assert plan.position_ids.tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 0], [0, 1, 2, 0, 1]]
    hidden = plan.input_ids[..., None].float().expand(-1, -1, 2)  # each token's hidden state is its id
    torch.testing.assert_close(plan.unpack(hidden), ids[..., None].float().expand(-1, -1, 2))
    wide = PackPlan.for_batch(ids, mask, pack_width=8)
    assert (wide.rows, wide.width) == (2, 8) and wide.position_ids[0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    torch.testing.assert_close(wide.unpack(wide.input_ids[..., None].float()), ids[..., None].float())
    assert PackPlan.for_batch(ids[:1], mask[:1]) is None  # one row: nothing to pack
    assert PackPlan.for_batch(ids, mask.flip(1)) is None  # left padding: not packed


def test_lean_dpo_does_not_pack_a_model_that_mixes_packed_sequences(tmp_path, tiny_path, tiny_tokenizer, monkeypatch):
    import transformers.masking_utils as masking

    monkeypatch.setattr(masking, "find_packed_sequence_indices", lambda position_ids: None)  # packing ignored
    common = {"rows": PAIRS, "config": {"precompute_ref_log_probs": False}}
    trl_loss, _ = loss_and_grads(build(tmp_path / "trl", tiny_path, tiny_tokenizer, **common))
    lean = build(tmp_path / "lean", tiny_path, tiny_tokenizer, LeanDPOTrainer, **common)
    lean_loss, _ = loss_and_grads(lean)
    batch = lean.data_collator([lean.train_dataset[i] for i in range(3)])
    assert lean.model.slot_counts[1] == batch["attention_mask"].numel()  # the probe said no: padded rows
    torch.testing.assert_close(lean_loss, trl_loss, rtol=1e-5, atol=1e-6)


def test_lean_dpo_with_lora_reference_is_the_base(tmp_path, tiny_path, tiny_tokenizer):
    from peft import LoraConfig

    common = {"rows": PAIRS, "config": {"precompute_ref_log_probs": False}, "peft_config": LoraConfig(r=4)}
    trl_loss, _ = loss_and_grads(build(tmp_path / "trl", tiny_path, tiny_tokenizer, **common))
    lean = build(tmp_path / "lean", tiny_path, tiny_tokenizer, LeanDPOTrainer, **common)
    lean_loss, grads = loss_and_grads(lean)
    torch.testing.assert_close(lean_loss, trl_loss, rtol=1e-5, atol=1e-6)
    assert grads and all("lora" in name for name in grads)


def test_length_grouping_adds_lengths_and_logs_padding(tmp_path, tiny_path, tiny_tokenizer):
    rows = [pair(f"Question {i}?" + " more" * (i % 7) * 5, "Yes." + " ok" * i, "No.") for i in range(24)]
    config = {"train_sampling_strategy": "group_by_length", "per_device_train_batch_size": 4, "max_steps": 3}
    config |= {"logging_steps": 1, "save_strategy": "no"}
    lean = build(tmp_path, tiny_path, tiny_tokenizer, LeanDPOTrainer, rows=rows, config=config)
    row = lean.train_dataset[5]
    assert row["length"] == len(row["prompt_ids"]) + max(len(row["chosen_ids"]), len(row["rejected_ids"]))
    assert type(lean._get_train_sampler()).__name__ == "LengthGroupedSampler"
    lean.train()
    padding = [log["padding_fraction"] for log in lean.state.log_history if "padding_fraction" in log]
    assert len(padding) == 3 and all(0.0 <= p < 1.0 for p in padding)


def test_lean_dpo_holds_a_lora_base_in_bf16_with_fp32_adapters(tmp_path, tiny_path, tiny_tokenizer):
    from peft import LoraConfig

    config = {"bf16": True, "precompute_ref_log_probs": False}
    lean = build(
        tmp_path, tiny_path, tiny_tokenizer, LeanDPOTrainer, rows=PAIRS, config=config, peft_config=LoraConfig(r=4)
    )
    dtypes = {name: p.dtype for name, p in lean.model.named_parameters()}
    assert {d for n, d in dtypes.items() if "lora_" in n} == {torch.float32}
    assert {d for n, d in dtypes.items() if "lora_" not in n} == {torch.bfloat16}
    loss, grads = loss_and_grads(lean)
    assert torch.isfinite(loss) and grads and all(torch.isfinite(g).all() for g in grads.values())


def test_guard_stops_at_a_non_finite_gradient_before_the_update(tmp_path, tiny_path, tiny_tokenizer):
    from trl_ext.guards import NonFiniteError, guard_non_finite

    config = {"max_steps": 2, "save_strategy": "no"}
    trainer = build(tmp_path, tiny_path, tiny_tokenizer, LeanDPOTrainer, rows=PAIRS, config=config)
    param = next(p for p in trainer.model.parameters() if p.requires_grad)
    before = param.detach().clone()
    param.register_hook(lambda grad: grad * float("nan"))  # the loss stays finite, one gradient does not
    guard_non_finite(trainer)
    with pytest.raises(NonFiniteError, match="non-finite gradient norm \\(nan\\) at step 1"):
        trainer.train()
    assert torch.equal(param.detach(), before)
