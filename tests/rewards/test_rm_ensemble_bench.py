"""scripts/bench_rm_ensemble.py: each member's margins on the pairs, and the ensemble of standardized margins."""

import json

import pytest
import torch

from tests.conftest import REPO


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import bench_rm_ensemble

    return bench_rm_ensemble


def test_ensemble_standardizes_each_member_before_the_mean(bench):
    # member 1 scores on a wide scale, member 2 on a narrow one: unscaled, member 1's small -1 would outvote member
    # 2's confident +0.1 on pair 2; standardized, member 2 carries it
    members = torch.tensor([[10.0, 10.0, -1.0, -10.0], [-0.1, 0.1, 0.1, -0.1]])
    z = members / members.std(dim=1, keepdim=True)
    assert torch.allclose(bench.ensemble(members), z.mean(0))
    assert members.mean(0)[2] < 0 < bench.ensemble(members)[2]
    assert bench.ensemble(members * torch.tensor([[1.0], [100.0]])).allclose(bench.ensemble(members))  # scale-free
    assert bench.accuracy(torch.tensor([1.0, -1.0, 0.0, 2.0])) == 0.5  # a tie is not a win


def test_margins_of_saved_reward_models_on_a_pairs_file(bench, tmp_path, tiny_path):
    from trl_ext.data import load_preferences
    from trl_ext.models import load_reward_model, load_tokenizer

    tokenizer = load_tokenizer(tiny_path)
    folders = []
    for seed in (0, 1):  # two members: the same body, each with its own fresh score head
        torch.manual_seed(seed)
        folder = tmp_path / f"rm{seed}"
        load_reward_model(tiny_path, tokenizer).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders.append(str(folder))
    rows = [{"prompt": f"Question {i}?", "chosen": f"Answer {i}.", "rejected": "No." * (i + 1)} for i in range(5)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = load_preferences(str(path), eval_size="all")[0]["eval"]
    members = torch.stack([bench.margins(folder, pairs, 64) for folder in folders])
    assert members.shape == (2, 5) and torch.isfinite(members).all()
    assert not torch.allclose(members[0], members[1])  # two heads, two opinions
    again = bench.margins(folders[0], pairs, 64)
    assert torch.allclose(again, members[0], atol=1e-5)  # a saved model scores the same every time
