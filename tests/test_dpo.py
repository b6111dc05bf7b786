"""R-DPO as an extension of TRL's DPOTrainer: alpha = 0 is TRL's loss exactly; alpha > 0 subtracts
alpha * (|y_w| - |y_l|) from the margin inside the sigmoid."""

import math

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset

from trl_ext._compat import DPOConfig, DPOTrainer
from trl_ext.dpo import LengthRegularizedDPOTrainer
from trl_ext.models import load_policy

PAIR = {
    "prompt": [{"role": "user", "content": "How do I boil an egg?"}],
    "chosen": [{"role": "assistant", "content": "Simmer it for nine minutes, then cool it in cold water."}],
    "rejected": [{"role": "assistant", "content": "Figure it out."}],
}


def first_loss(trainer) -> torch.Tensor:
    batch = trainer.data_collator([trainer.train_dataset[0]])
    return trainer.compute_loss(trainer.model, batch)


def build(tmp_path, tiny_path, tokenizer, cls=DPOTrainer, loss_type=("sigmoid",), **kwargs):
    args = DPOConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        precompute_ref_log_probs=True,
        per_device_train_batch_size=1,
        report_to="none",
        max_length=128,
        beta=0.1,
        loss_type=list(loss_type),
        gradient_checkpointing=False,
    )
    torch.manual_seed(0)
    model = load_policy(tiny_path, tokenizer)
    with torch.no_grad():  # move the policy away from its reference so the margin is not zero
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return cls(model=model, args=args, train_dataset=Dataset.from_list([PAIR]), processing_class=tokenizer, **kwargs)


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


def test_rdpo_refuses_settings_it_cannot_express(tmp_path, tiny_path, tiny_tokenizer):
    with pytest.raises(ValueError, match="margin losses"):
        build(tmp_path, tiny_path, tiny_tokenizer, LengthRegularizedDPOTrainer, loss_type=("ipo",), rdpo_alpha=0.1)
