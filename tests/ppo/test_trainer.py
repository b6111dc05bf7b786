"""PPOTrainer on the tiny model: it learns a programmatic reward with bounded KL, resumes exactly, shares weights
with its reference under LoRA, survives bad inputs, and behaves as a TRL trainer (eval_dataset, callbacks, report_to,
refused fields, saving that leaves it untouched, default critics for every reward-model case)."""

import logging
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import ProgressCallback, TrainerCallback

from tests.ppo.conftest import letter_e_reward, make_trainer, scores, small_config
from trl_ext.models import load_policy
from trl_ext.ppo import PPOConfig, PPOTrainer


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
    # Adam turns float-rounding differences of near-zero gradients into differences of a few 1e-5 (2.7e-5 seen with
    # transformers 5.2 / peft 0.17); a wrong log-prob path moves weights by the learning rate, 1e-3.
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-4, worst


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
            trainer_kwargs=dict(peft_config=lora),
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
    # Adam turns float-rounding differences of near-zero gradients into differences of a few 1e-5 (2.7e-5 seen with
    # transformers 5.2 / peft 0.17); a wrong log-prob path moves weights by the learning rate, 1e-3.
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-4, worst


def test_lora_policy_uses_the_base_as_reference(tmp_path, tiny_path, tiny_tokenizer, prompts):
    from peft import LoraConfig

    lora = dict(peft_config=LoraConfig(r=4, target_modules="all-linear"))
    trainer = make_trainer(
        tmp_path,
        tiny_path,
        tiny_tokenizer,
        prompts,
        trainer_kwargs=lora,
        per_device_train_batch_size=4,
        response_length=8,
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


# ----- behaving like a TRL trainer (issue #16) ---------------------------------------------------------------------
def test_save_model_leaves_a_lora_trainer_untouched(tmp_path, tiny_path, tiny_tokenizer, prompts):
    """Saving merges the adapters into a copy: the live policy keeps them, its reference (adapters disabled) stays the
    initial weights, a second save gives the same file, and training after a save measures KL to the right model."""
    from peft import LoraConfig
    from safetensors.torch import load_file

    lora = LoraConfig(r=4, target_modules="all-linear")
    trainer = make_trainer(
        tmp_path, tiny_path, tiny_tokenizer, prompts, trainer_kwargs=dict(peft_config=lora), learning_rate=1e-2
    )
    trainer.train()
    policy = trainer.accelerator.unwrap_model(trainer.model).policy
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    probe = tiny_tokenizer(["Is it okay to drink coffee every day?"], return_tensors="pt")
    base = load_policy(tiny_path, tiny_tokenizer)
    trainer.save_model(tmp_path / "a")
    after = policy.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())
    with torch.no_grad():
        with policy.disable_adapter():
            torch.testing.assert_close(policy(**probe).logits, base(**probe).logits)
        trained = policy(**probe).logits
    assert not torch.allclose(trained, base(**probe).logits, atol=1e-4)
    saved = load_policy(str(tmp_path / "a"), tiny_tokenizer)
    torch.testing.assert_close(saved(**probe).logits, trained, atol=1e-5, rtol=1e-5)  # merged: the trained policy
    trainer.save_model(tmp_path / "b")
    a, b = (load_file(tmp_path / name / "model.safetensors") for name in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    trainer.state.max_steps = 2  # one more update after the saves: the reference is still the initial policy
    trainer.train()
    assert trainer.state.global_step == 2 and abs(trainer.state.log_history[-1]["objective/kl"]) > 1e-3


def test_a_reward_model_with_its_own_tokenizer_gets_a_critic_from_the_policy(
    tmp_path, tiny_path, tiny_tokenizer, prompts, other_tokenizer, other_vocab_reward_model, caplog
):
    """The critic reads the policy's ids: a copy of a reward model with another vocabulary would index past its
    embeddings (IndexError); the default is then the policy's backbone with a fresh value head."""
    with caplog.at_level(logging.INFO):
        trainer = PPOTrainer(
            load_policy(tiny_path, tiny_tokenizer),
            small_config(tmp_path, per_device_train_batch_size=4, response_length=8),
            tiny_tokenizer,
            prompts,
            reward_model=other_vocab_reward_model,
            reward_processing_class=other_tokenizer,
        )
    assert "PPO critic: the policy's backbone with a fresh value head (the reward model has its own vocabulary)" in (
        caplog.text
    )
    critic = trainer.accelerator.unwrap_model(trainer.model).value_model
    assert critic.get_input_embeddings().num_embeddings == len(tiny_tokenizer)
    trainer.train()
    assert torch.isfinite(torch.tensor(trainer.state.log_history[-1]["loss/value"]))


def test_a_reward_model_sharing_the_tokenizer_initialises_the_critic(
    tmp_path, tiny_path, tiny_tokenizer, prompts, caplog
):
    from trl_ext.models import load_reward_model, load_tokenizer

    reward_model = load_reward_model(tiny_path, tiny_tokenizer)
    with caplog.at_level(logging.INFO):
        trainer = PPOTrainer(
            load_policy(tiny_path, tiny_tokenizer),
            small_config(tmp_path),
            tiny_tokenizer,
            prompts,
            reward_model=reward_model,
            reward_processing_class=load_tokenizer(tiny_path),  # another object, the same vocabulary
        )
    assert "PPO critic: a copy of the reward model" in caplog.text
    critic = trainer.accelerator.unwrap_model(trainer.model).value_model
    pairs = list(zip(critic.parameters(), reward_model.parameters()))
    assert all(torch.equal(a, b) and a.data_ptr() != b.data_ptr() for a, b in pairs)  # a copy: the reward stays


def test_a_policy_built_in_memory_gets_a_critic_from_its_weights(tmp_path, tiny_tokenizer, prompts):
    """No `name_or_path` to load from: the critic's body is copied from the policy in memory."""
    from trl_ext.models.tiny import build_tiny_model

    policy = build_tiny_model(tiny_tokenizer, seed=3)
    assert policy.config.name_or_path == ""
    initial = [p.clone() for p in policy.model.parameters()]
    trainer = PPOTrainer(policy, small_config(tmp_path), tiny_tokenizer, prompts, reward_funcs=[letter_e_reward])
    critic = trainer.accelerator.unwrap_model(trainer.model).value_model
    pairs = list(zip(critic.model.parameters(), policy.model.parameters()))
    assert all(torch.equal(a, b) and a.data_ptr() != b.data_ptr() for a, b in pairs)
    trainer.train()
    for model in (critic, policy):  # both learned, each its own way
        assert not all(torch.equal(a, b) for a, b in zip(model.model.parameters(), initial))
    assert not all(torch.equal(a, b) for a, b in zip(critic.model.parameters(), policy.model.parameters()))


def test_eval_dataset_is_evaluated_at_eval_steps_without_changing_training(
    tmp_path, tiny_path, tiny_tokenizer, prompts, eval_prompts
):
    """Held-out prompts answered as in a rollout: mean score, KL, answer length and sample answers logged at each
    eval step; a fixed seed makes evaluate() repeatable, and the training RNG is left alone."""
    held_out = eval_prompts.select(range(6))
    evaluation = dict(eval_strategy="steps", eval_steps=1, eval_on_start=True)
    trainer = make_trainer(
        tmp_path,
        tiny_path,
        tiny_tokenizer,
        prompts,
        trainer_kwargs=dict(eval_dataset=held_out),
        max_steps=2,
        **evaluation,
    )
    trainer.train()
    evals = [h for h in trainer.state.log_history if "eval_objective/scores" in h]
    assert [h["step"] for h in evals] == [0, 1, 2]
    for entry in evals:
        for key in ("eval_objective/scores", "eval_objective/kl", "eval_response_length", "eval_eos_fraction"):
            assert torch.isfinite(torch.tensor(entry[key])), key
        assert held_out[0]["prompt"][-1]["content"][-30:] in entry["eval_samples"]
    assert evals[0]["eval_objective/kl"] == pytest.approx(0, abs=1e-4)  # before any update: the reference itself
    assert abs(evals[2]["eval_objective/kl"]) > 1e-3
    again = trainer.evaluate()
    assert again["eval_objective/scores"] == pytest.approx(evals[-1]["eval_objective/scores"])
    plain = make_trainer(tmp_path / "plain", tiny_path, tiny_tokenizer, prompts, max_steps=2)
    plain.train()
    assert scores(trainer) == scores(plain)


def test_reward_functions_receive_the_dataset_columns(tmp_path, tiny_path, tiny_tokenizer, prompts):
    """As in TRL's GRPO: every other column by name (row-aligned), plus completion_ids and trainer_state."""
    from trl_ext.chat import text_of

    data = prompts.select(range(16)).map(
        lambda row, i: {"baseline": f"answer {i}", "prompt_text": text_of(row["prompt"])}, with_indices=True
    )
    calls = []

    def reward(prompts, completions, baseline, prompt_text, completion_ids, trainer_state, **kwargs):
        assert [text_of(p) for p in prompts] == prompt_text and len(completion_ids) == len(completions)
        calls.append((baseline, trainer_state.global_step))
        return [0.0] * len(completions)

    trainer = make_trainer(tmp_path, tiny_path, tiny_tokenizer, data, reward=reward, per_device_train_batch_size=4)
    trainer.train()
    assert len(calls) == 1 and len(calls[0][0]) == 4 and calls[0][1] == 0
    assert all(b.startswith("answer ") for b in calls[0][0])


def test_pre_tokenized_prompts_are_decoded(tmp_path, tiny_path, tiny_tokenizer, prompts):
    """TRL <= 1.12's PPO format (`input_ids`): decoded, the policy reads the same tokens; without either column the
    error names the one needed."""
    texts = [
        tiny_tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts["prompt"]
    ]
    ids = [tiny_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts[:16]]
    seen = []

    def reward(prompts, completions, **kwargs):
        seen.extend(prompts)
        return letter_e_reward(prompts, completions)

    trainer = make_trainer(tmp_path, tiny_path, tiny_tokenizer, Dataset.from_dict({"input_ids": ids}), reward=reward)
    trainer.train()
    assert set(seen) <= set(texts[:16]) and len(seen) == 8

    from trl_ext.exceptions import DataError
    from trl_ext.ppo.rollout import collate_prompts

    batch = collate_prompts(list(trainer.train_dataset.select(range(2))), tiny_tokenizer, 512)
    for row, mask, expected in zip(batch.queries, batch.query_mask, ids):
        assert row[mask.bool()].tolist() == expected
    with pytest.raises(DataError, match="needs a `prompt` column"):
        make_trainer(tmp_path, tiny_path, tiny_tokenizer, Dataset.from_dict({"text": ["hi"] * 8}))


@pytest.mark.parametrize(
    "field, value",
    [("push_to_hub", True), ("torch_compile", True), ("label_smoothing_factor", 0.1), ("fsdp", "full_shard")],
)
def test_training_arguments_ppo_does_not_honour_are_refused(tmp_path, field, value):
    from trl_ext.exceptions import ConfigError

    with pytest.raises(ConfigError, match=f"PPOConfig: {field}={value!r}: not supported by trl_ext's PPOTrainer"):
        small_config(tmp_path, **{field: value})


@pytest.mark.parametrize(
    "overrides", [[], ["trainer.report_to=[tensorboard]"], ["+trainer.eval_strategy=steps", "+trainer.eval_steps=2"]]
)
def test_the_recipe_trainer_config_is_accepted(tmp_path, overrides):
    """conf/trainer/ppo.yaml, composed as the recipe composes it (with the acceptance commands' overrides)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from tests.conftest import REPO
    from trl_ext.utils.device import fill_precision

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("ppo", overrides=["model=tiny", *overrides])
    args = PPOConfig(output_dir=str(tmp_path), **fill_precision(OmegaConf.to_container(cfg.trainer, resolve=True)))
    assert args.save_total_limit == 1 and args.num_ppo_epochs == 1
    assert PPOConfig(**args.to_dict()).to_dict() == args.to_dict()  # a config rebuilt from its dict passes too


def test_report_to_tensorboard_writes_an_event_file(tmp_path, tiny_path, tiny_tokenizer, prompts):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = make_trainer(
        tmp_path, tiny_path, tiny_tokenizer, prompts, max_steps=2, report_to=["tensorboard"], response_length=8
    )
    trainer.train()
    events = list(tmp_path.glob("runs/*/events.out.tfevents.*"))
    assert len(events) == 1
    reader = EventAccumulator(str(events[0].parent))
    reader.Reload()
    assert [e.step for e in reader.Scalars("train/objective/scores")] == [1, 2]
    assert [e.value for e in reader.Scalars("train/objective/kl")] == pytest.approx(
        [h["objective/kl"] for h in trainer.state.log_history]
    )


class Recorder(TrainerCallback):
    """Records (event, step) as the callbacks see them, and whether a saved checkpoint is complete when announced."""

    def __init__(self):
        self.events = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.events.append(("train_begin", state.global_step))

    def on_step_end(self, args, state, control, **kwargs):
        self.events.append(("step_end", state.global_step))

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.events.append(("log:eval" if "eval_objective/scores" in logs else "log:train", state.global_step))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.events.append(("evaluate", state.global_step))
        assert "eval_objective/kl" in metrics

    def on_save(self, args, state, control, **kwargs):
        marker = Path(args.output_dir) / f"checkpoint-{state.global_step}" / PPOTrainer.checkpoint_marker
        self.events.append(("save" if marker.is_file() else "save:incomplete", state.global_step))

    def on_train_end(self, args, state, control, **kwargs):
        self.events.append(("train_end", state.global_step))


def test_user_callbacks_receive_the_events_in_order(tmp_path, tiny_path, tiny_tokenizer, prompts, eval_prompts):
    recorder = Recorder()
    trainer = make_trainer(
        tmp_path,
        tiny_path,
        tiny_tokenizer,
        prompts,
        trainer_kwargs=dict(eval_dataset=eval_prompts.select(range(4)), callbacks=[recorder]),
        max_steps=2,
        per_device_train_batch_size=4,
        response_length=8,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
    )
    trainer.train()
    assert recorder.events == [
        ("train_begin", 0),
        ("step_end", 1),
        ("log:train", 1),
        ("step_end", 2),
        ("log:train", 2),  # transformers' order: log, evaluate, save
        ("log:eval", 2),
        ("evaluate", 2),
        ("save", 2),
        ("train_end", 2),
    ]
    names = [type(c).__name__ for c in trainer.callback_handler.callbacks]
    assert names == ["DefaultFlowCallback", "Recorder", "PrinterCallback"]  # disable_tqdm: the printer, not the bar


class StopAtFirstUpdate(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = True


def test_callbacks_control_the_loop_and_logs_average_over_logging_steps(tmp_path, tiny_path, tiny_tokenizer, prompts):
    small = dict(per_device_train_batch_size=4, response_length=8)
    stopped = make_trainer(tmp_path / "stop", tiny_path, tiny_tokenizer, prompts, max_steps=3, **small)
    stopped.add_callback(StopAtFirstUpdate)
    stopped.train()
    assert stopped.state.global_step == 1
    each = make_trainer(tmp_path / "each", tiny_path, tiny_tokenizer, prompts, max_steps=2, **small)
    each.train()
    pooled = make_trainer(tmp_path / "pool", tiny_path, tiny_tokenizer, prompts, max_steps=2, logging_steps=2, **small)
    pooled.train()
    assert [h["step"] for h in pooled.state.log_history] == [2]
    assert pooled.state.log_history[0]["objective/scores"] == pytest.approx(sum(scores(each)) / 2)
    bar = make_trainer(tmp_path / "bar", tiny_path, tiny_tokenizer, prompts, disable_tqdm=False)
    assert any(isinstance(c, ProgressCallback) for c in bar.callback_handler.callbacks)  # transformers' own bar


def test_gradient_checkpointing_is_honoured(tmp_path, tiny_path, tiny_tokenizer, prompts):
    """Checkpointing recomputes activations in the backward pass: the same training, less memory."""
    from trl_ext._compat import checkpointing_enabled  # transformers renamed it in 5.x (is_activation_checkpointing)

    runs = []
    for on in (False, True):
        trainer = make_trainer(tmp_path / str(on), tiny_path, tiny_tokenizer, prompts, gradient_checkpointing=on)
        models = trainer.accelerator.unwrap_model(trainer.model)
        assert checkpointing_enabled(models.policy) is on and checkpointing_enabled(models.value_model) is on
        trainer.train()
        runs.append(trainer)
    a, b = (r.state.log_history[0] for r in runs)
    assert {k: v for k, v in a.items() if k != "time/update_s"} == pytest.approx(
        {k: v for k, v in b.items() if k != "time/update_s"}, rel=1e-5, abs=1e-6
    )


def test_no_weight_decay_on_biases_and_norms_as_in_transformers(tmp_path, tiny_model):
    from transformers import Trainer

    from trl_ext.ppo.trainer import make_optimizer

    optimizer = make_optimizer(tiny_model, small_config(tmp_path, weight_decay=0.1))
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] for p in g["params"]}
    names = {n for n, p in tiny_model.named_parameters() if id(p) in decayed}
    expected = set(Trainer.get_decay_parameter_names(None, tiny_model))  # the method reads nothing of self
    assert names == expected & dict(tiny_model.named_parameters()).keys()  # (lm_head.weight: tied, listed once)
    assert any("norm" in n for n, _ in tiny_model.named_parameters() if n not in names)
