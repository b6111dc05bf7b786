"""PPOTrainer on the tiny model: it learns a programmatic reward with bounded KL, resumes exactly, shares weights
with its reference under LoRA, survives bad inputs, and behaves as a TRL trainer (eval_dataset, callbacks, report_to,
refused fields, saving that leaves it untouched, default critics for every reward-model case)."""

import logging

import pytest
import torch
from datasets import Dataset

from tests.ppo.conftest import letter_e_reward, make_trainer, scores, small_config
from trl_ext.models import load_policy
from trl_ext.ppo import PPOTrainer


@pytest.mark.slow
def test_reward_rises_with_bounded_kl(tmp_path, tiny_path, tiny_tokenizer, prompts):
    trainer = make_trainer(tmp_path, tiny_path, tiny_tokenizer, prompts, max_steps=40, kl_coef=0.05)
    trainer.train()
    s = scores(trainer)
    first, last = sum(s[:8]) / 8, sum(s[-8:]) / 8
    kl = [h["objective/kl"] for h in trainer.state.log_history]
    assert last > first + 0.5, (first, last)
    assert max(kl) < 50 and kl[0] == pytest.approx(0, abs=1e-4)  # starts at the reference, drifts boundedly


def test_one_update_logs_what_practitioners_watch(tmp_path, tiny_path, tiny_tokenizer, prompts):
    trainer = make_trainer(tmp_path, tiny_path, tiny_tokenizer, prompts, max_steps=2, sample_every=1)
    trainer.train()
    entry = trainer.state.log_history[-1]
    assert entry["step"] == 2 and entry["epoch"] == pytest.approx(2 / trainer.updates_per_epoch)
    for key in (
        "objective/kl",
        "objective/entropy",
        "objective/scores",
        "policy/approxkl",
        "policy/clipfrac",
        "val/clipfrac",
        "loss/value",
        "loss/policy",
        "response_length",
    ):
        assert key in entry and torch.isfinite(torch.tensor(entry[key]))
    assert entry["samples"].startswith("| prompt | completion | score |") and entry["samples"].count("\n") == 5
    before = load_policy(trainer.policy.config.name_or_path)
    trainer.save_model(tmp_path / "out")
    after = load_policy(str(tmp_path / "out"))
    changed = [n for (n, a), b in zip(after.named_parameters(), before.parameters()) if not torch.equal(a, b)]
    assert len(changed) == len(list(after.parameters()))  # every trained parameter changed


def test_resume_gives_the_same_result(tmp_path, tiny_path, tiny_tokenizer, prompts):
    full = make_trainer(tmp_path / "full", tiny_path, tiny_tokenizer, prompts, max_steps=4)
    full.train()
    saving = dict(max_steps=4, save_strategy="steps", save_steps=2)
    part = make_trainer(tmp_path / "part", tiny_path, tiny_tokenizer, prompts, **saving)
    part.state.max_steps = 2  # stop after the checkpoint at update 2, as if interrupted
    part.train()
    assert (tmp_path / "part" / "checkpoint-2" / PPOTrainer.checkpoint_marker).is_file()
    resumed = make_trainer(tmp_path / "part", tiny_path, tiny_tokenizer, prompts, **saving)
    resumed.train(resume_from_checkpoint=True)
    assert [h["step"] for h in resumed.state.log_history] == [1, 2, 3, 4]
    assert scores(resumed) == pytest.approx(scores(full), abs=1e-5)
    a, b = full.policy.state_dict(), resumed.policy.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_actor_and_critic_backward_one_after_the_other_equals_one_backward(
    tmp_path, tiny_path, tiny_tokenizer, prompts
):
    """The single-process path (actor's backward, then critic's) against the summed loss distributed wrappers use."""
    runs = []
    for separate in (True, False):
        trainer = make_trainer(tmp_path / str(separate), tiny_path, tiny_tokenizer, prompts, max_steps=2)
        assert trainer.learner.separate_backward  # one process
        trainer.learner.separate_backward = separate
        trainer.train()
        runs.append(trainer)
    separate, summed = runs
    assert len(separate.state.log_history) == len(summed.state.log_history) == 2
    for a, b in zip(separate.state.log_history, summed.state.log_history):
        assert {k: v for k, v in a.items() if k != "time/update_s"} == pytest.approx(
            {k: v for k, v in b.items() if k != "time/update_s"}, rel=1e-5, abs=1e-6
        )
    a, b = (r.accelerator.unwrap_model(r.model).state_dict() for r in runs)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.parametrize("peft", [False, True])
def test_chunked_log_probs_train_like_the_logits(tmp_path, tiny_path, tiny_tokenizer, prompts, peft):
    """The chunked head (policy in learning, reference in the rollout) against the response logits."""
    from peft import LoraConfig

    runs = []
    for chunked in (True, False):
        lora = LoraConfig(r=4, target_modules="all-linear") if peft else None  # reference: adapters disabled
        trainer = make_trainer(
            tmp_path / str(chunked),
            tiny_path,
            tiny_tokenizer,
            prompts,
            peft_config=lora,
            max_steps=2,
            chunked_logps=chunked,
        )
        assert trainer.chunked_logps is chunked
        trainer.train()
        runs.append(trainer)
    assert len(runs[0].state.log_history) == len(runs[1].state.log_history) == 2
    for a, b in zip(runs[0].state.log_history, runs[1].state.log_history):
        assert {k: v for k, v in a.items() if k != "time/update_s"} == pytest.approx(
            {k: v for k, v in b.items() if k != "time/update_s"}, rel=1e-4, abs=1e-5
        )
    a, b = (r.accelerator.unwrap_model(r.model).state_dict() for r in runs)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_lora_policy_uses_the_base_as_reference(tmp_path, tiny_path, tiny_tokenizer, prompts):
    from peft import LoraConfig

    args = small_config(tmp_path, per_device_train_batch_size=4, response_length=8)
    trainer = PPOTrainer(
        load_policy(tiny_path, tiny_tokenizer),
        args,
        tiny_tokenizer,
        prompts,
        reward_funcs=[letter_e_reward],
        peft_config=LoraConfig(r=4, target_modules="all-linear"),
    )
    assert trainer.ref_model is None  # no second copy of the weights
    trainer.train()
    assert trainer.state.log_history[0]["objective/kl"] == pytest.approx(0, abs=1e-4)


def test_bad_inputs(tmp_path, tiny_path, tiny_tokenizer, caplog):
    long_prompts = Dataset.from_list([{"prompt": "word " * 400}] * 4 + [{"prompt": "hi"}] * 4)

    def nan_reward(prompts, completions, **kw):
        return [float("nan")] * len(completions)

    with pytest.raises(ValueError, match="reward function nan_reward returned nan"):
        make_trainer(tmp_path, tiny_path, tiny_tokenizer, long_prompts, reward=nan_reward, max_steps=1).train()

    trainer = make_trainer(
        tmp_path, tiny_path, tiny_tokenizer, long_prompts, max_steps=1, max_prompt_length=64, response_length=1
    )  # responses of one token: often only EOS, never a crash
    with caplog.at_level(logging.WARNING):
        trainer.train()
    assert "prompts were longer than max_prompt_length=64" in caplog.text and trainer.truncated_prompts >= 4
    with pytest.raises(ValueError, match="pad token distinct from EOS"):
        tok = tiny_tokenizer.__class__.from_pretrained(tiny_path)
        tok.pad_token = tok.eos_token
        PPOTrainer(
            load_policy(tiny_path, tok),
            small_config(tmp_path),
            tok,
            long_prompts,
            reward_funcs=[letter_e_reward],
        )


def test_memory_lean_critic_shares_the_frozen_reward_model(tmp_path, tiny_path, tiny_tokenizer, prompts):
    from peft import LoraConfig

    from trl_ext.models import load_reward_model
    from trl_ext.rewards import RewardModelScorer

    reward_model = load_reward_model(tiny_path, tiny_tokenizer)
    probe = (prompts["prompt"][:3], ["a short answer", "another one", "and a third"])
    before = RewardModelScorer(reward_model, tiny_tokenizer)(*probe)
    args = small_config(tmp_path, max_steps=2, learning_rate=1e-2, per_device_train_batch_size=4, response_length=8)
    trainer = PPOTrainer(
        load_policy(tiny_path, tiny_tokenizer),
        args,
        tiny_tokenizer,
        prompts,
        reward_model=reward_model,
        peft_config=LoraConfig(r=4, target_modules="all-linear"),
    )
    critic = trainer.value_model
    assert trainer.reward_funcs[0].model is critic and trainer.ref_model is None  # one copy of each base
    trainer.train()
    assert trainer.reward_funcs[0](*probe) == pytest.approx(before, abs=1e-5)  # the reward stayed frozen
    with_adapters = RewardModelScorer(critic, tiny_tokenizer)(*probe)
    assert with_adapters != pytest.approx(before, abs=1e-5)  # while the critic learned


def test_non_finite_loss_stops_before_the_update_with_the_checkpoint_named(
    tmp_path, tiny_path, tiny_tokenizer, prompts, monkeypatch
):
    from trl_ext.guards import NonFiniteError

    monkeypatch.setenv("TRL_EXT_NAN_AT_STEP", "3")
    trainer = make_trainer(
        tmp_path, tiny_path, tiny_tokenizer, prompts, max_steps=4, save_strategy="steps", save_steps=2
    )
    with pytest.raises(NonFiniteError, match=f"PPO loss \\(nan\\) at step 3.*{tmp_path / 'checkpoint-2'}"):
        trainer.train()
    assert trainer.state.global_step == 2 and not (tmp_path / "checkpoint-4").exists()
    assert all(torch.isfinite(p).all() for p in trainer.policy.parameters())
