"""PPO for language models on current TRL and transformers: actor, critic, reward, reference.

Each update reads top to bottom: `make_experience` (rollouts, log-probs, values, scores, per-token rewards, GAE),
then `learn` (PPO epochs over minibatches with clipped policy and value losses), then the KL controller update.
Built on accelerate (mixed precision, gradient accumulation, DeepSpeed/DDP, checkpoints with RNG state); the math
lives in `trl_ext.ppo.core` and `trl_ext.kl`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DistributedType, PartialState
from datasets import Dataset
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import (
    AutoModelForSequenceClassification,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerState,
    get_scheduler,
)
from transformers.trainer_utils import get_last_checkpoint

from trl_ext._compat import (
    disable_dropout_in_model,
    prepare_deepspeed,
    selective_log_softmax_and_entropy,
    unwrap_model_for_generation,
)
from trl_ext.distributed import full_weights, gathered_parameters
from trl_ext.guards import NonFiniteError, forced_nan, non_finite_message
from trl_ext.kl import kl_per_token, make_kl_controller
from trl_ext.logprobs import supports_chunked_head, token_logps
from trl_ext.ppo import core
from trl_ext.ppo.config import PPOConfig
from trl_ext.rewards import RewardModelScorer, score

logger = logging.getLogger(__name__)
STATE_FILE = "ppo_state.json"


@dataclass
class Experience:
    """One rollout batch. b = rollouts, q = prompt tokens (left padded), t = response tokens (right padded)."""

    queries: torch.Tensor  # (b, q) prompt ids
    query_mask: torch.Tensor  # (b, q) 1 on real prompt tokens
    responses: torch.Tensor  # (b, t) sampled ids, padded after EOS
    mask: torch.Tensor  # (b, t) 1 up to and including the first EOS
    logprobs: torch.Tensor  # (b, t) log pi_old(y_t)
    ref_logprobs: torch.Tensor  # (b, t) log pi_ref(y_t)
    values: torch.Tensor  # (b, t) V_old before each response token
    scores: torch.Tensor  # (b,) sequence scores (after the missing-EOS penalty)
    kl: torch.Tensor  # (b, t) per-token KL estimate
    advantages: torch.Tensor  # (b, t) whitened GAE advantages
    returns: torch.Tensor  # (b, t) advantages + values
    entropy: torch.Tensor  # (b, t) policy entropy at each response position

    def select(self, index: torch.Tensor) -> Experience:
        return Experience(**{k: v[index] for k, v in vars(self).items()})


class PolicyAndValue(nn.Module):
    """Holds actor and critic in one module so one optimizer and one `accelerator.prepare` cover both."""

    def __init__(self, policy: PreTrainedModel, value_model: PreTrainedModel):
        super().__init__()
        self.policy, self.value_model = policy, value_model

    # What TRL's `unwrap_model_for_generation` asks of the model it unwraps (gradient checkpointing is the policy's).
    @property
    def is_gradient_checkpointing(self) -> bool:
        return getattr(self.policy, "is_gradient_checkpointing", False)

    def gradient_checkpointing_disable(self) -> None:
        self.policy.gradient_checkpointing_disable()

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None) -> None:
        self.policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)

    @property
    def config(self):  # what DeepSpeed reads to size its buckets
        return self.policy.config

    def forward(self, input_ids, attention_mask, position_ids, responses, temperature: float, chunked: bool):
        """(policy log-probs (b, t) and entropy (b, t) of the responses, critic values (b, t))."""
        inputs = (input_ids, attention_mask, position_ids)
        logprobs, entropy = response_logprobs(self.policy, *inputs, responses, temperature, chunked)
        return logprobs, entropy, value_forward(self.value_model, *inputs, n_response=responses.shape[1])


def _backbone(model: PreTrainedModel) -> tuple[PreTrainedModel, nn.Module]:
    """(the model under any peft wrapper, its transformer body). Adapters are injected in place, so the body runs
    with them (or without, inside peft's `disable_adapter()`)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner, getattr(inner, inner.base_model_prefix)


def response_logprobs(
    model: PreTrainedModel,
    input_ids,
    attention_mask,
    position_ids,
    responses,
    temperature: float,
    chunked: bool,
    entropy: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs at `temperature` of the response tokens (the last t positions) and the entropy there, both (b, t).

    `chunked`: from the final hidden states through torch's chunked `linear_cross_entropy` (`trl_ext.logprobs`),
    never the (b, t, vocab) logits and their log-softmax; the entropy is then computed without gradient, and only
    with `entropy` (else None). Otherwise the response positions' logits (`logits_to_keep`) and TRL's
    `selective_log_softmax_and_entropy`."""
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    n = responses.shape[1]
    if chunked:
        inner, backbone = _backbone(model)
        hidden = backbone(**inputs).last_hidden_state[:, -n - 1 : -1]
        out = token_logps(hidden / temperature, inner.get_output_embeddings(), responses, stats=entropy)
        return out["log_probs"], out.get("entropy")
    logits = model(**inputs, logits_to_keep=n + 1).logits[:, :-1]
    return selective_log_softmax_and_entropy(logits.float() / temperature, responses)


def value_forward(model: PreTrainedModel, input_ids, attention_mask, position_ids, n_response: int) -> torch.Tensor:
    """A scalar head's output at every position that predicts a response token. Shape: (b, t).

    Works for a plain sequence classifier and for one wrapped with peft adapters (injected in place).
    """
    inner, backbone = _backbone(model)
    hidden = backbone(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
    ).last_hidden_state
    return inner.score(hidden[:, -n_response - 1 : -1]).squeeze(-1).float()


class PPOTrainer:
    """PPO with a KL penalty to a reference (Ziegler et al. 2019; Ouyang et al. 2022).

    Args:
        model: the policy, a causal LM or a path/hub id.
        args: a `PPOConfig`.
        processing_class: the policy's tokenizer (with a pad token distinct from EOS: see `ensure_pad_token`).
        train_dataset: prompts, `{"prompt": str}` or `{"prompt": [messages]}` (TRL's prompt-only formats).
        reward_model: a one-label sequence classifier scoring prompt + response (optional).
        reward_funcs: functions `fn(prompts, completions, **kwargs) -> list[float]` (optional; summed with the reward
            model's score, weighted by `args.reward_weights`).
        ref_model: the reference policy; default a frozen copy of the initial policy, or with a peft policy the same
            weights with adapters disabled (no second copy).
        value_model: the critic; default initialised from the reward model, else from the policy with a scalar head.
        peft_config: wrap the policy with these adapters (e.g. `LoraConfig`).
        reward_processing_class: the reward model's tokenizer, if it differs from the policy's.
    """

    def __init__(
        self,
        model: PreTrainedModel | str,
        args: PPOConfig,
        processing_class: PreTrainedTokenizerBase,
        train_dataset: Dataset,
        reward_model: PreTrainedModel | None = None,
        reward_funcs: Sequence[Callable] | None = None,
        ref_model: PreTrainedModel | None = None,
        value_model: PreTrainedModel | None = None,
        peft_config: Any = None,
        reward_processing_class: PreTrainedTokenizerBase | None = None,
    ):
        from trl_ext.models import load_policy

        self.args, self.tokenizer = args, processing_class
        if processing_class.pad_token_id is None or processing_class.pad_token_id == processing_class.eos_token_id:
            raise ValueError("PPO needs a pad token distinct from EOS (masks are built from it): see ensure_pad_token")
        torch.manual_seed(args.seed)
        policy = load_policy(model, processing_class) if isinstance(model, str) else model
        self.is_peft = peft_config is not None or hasattr(policy, "disable_adapter")
        if ref_model is None and not self.is_peft:
            ref_model = copy.deepcopy(policy)
        if peft_config is not None:
            from peft import get_peft_model

            policy = get_peft_model(policy, peft_config)
        reward_tokenizer = reward_processing_class or processing_class
        self.reward_funcs, reward_scorer = list(reward_funcs or []), None
        if value_model is None and reward_model is not None and peft_config is not None:
            # Memory-lean: the critic is the reward model plus adapters (and its own score head), and the reward is
            # the same weights with the adapters disabled, as the reference is for the policy: no copy at all.
            from peft import get_peft_model

            critic_peft = dataclasses.replace(peft_config, task_type="SEQ_CLS", modules_to_save=["score"])
            value_model = get_peft_model(reward_model, critic_peft)
            self.reward_funcs.insert(0, RewardModelScorer(value_model, reward_tokenizer, adapters_disabled=True))
        else:
            if reward_model is not None:
                reward_scorer = RewardModelScorer(reward_model, reward_tokenizer)
                self.reward_funcs.insert(0, reward_scorer)
            if value_model is None:
                if reward_model is not None:
                    value_model = copy.deepcopy(reward_model)
                else:
                    with full_weights():  # as the policy: whole until the DeepSpeed engine shards both
                        value_model = AutoModelForSequenceClassification.from_pretrained(
                            policy.get_base_model().config.name_or_path if self.is_peft else policy.config.name_or_path,
                            num_labels=1,
                            dtype=policy.dtype,
                        )
        value_model.config.pad_token_id = processing_class.pad_token_id
        if not self.reward_funcs:
            raise ValueError("PPOTrainer needs a reward_model or at least one reward function")
        for m in (policy, value_model):
            disable_dropout_in_model(m)

        # The device comes from the process state, as in transformers' Trainer (no `cpu=` here: it would turn a
        # DeepSpeed launch on CPU into plain DDP).
        PartialState(cpu=args.use_cpu)
        self.accelerator = Accelerator(
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            mixed_precision="bf16" if args.bf16 else ("fp16" if args.fp16 else "no"),
        )
        self.deepspeed = self.accelerator.state.deepspeed_plugin
        logger.info("PPO: %s, %d process(es)", self.accelerator.distributed_type, self.accelerator.num_processes)
        if self.deepspeed is not None:  # no dataloader is prepared with the model: tell DeepSpeed the micro-batch
            ds_config = self.deepspeed.deepspeed_config
            fill = {
                "train_micro_batch_size_per_gpu": args.per_device_train_batch_size,
                "gradient_clipping": args.max_grad_norm or 0.0,  # DeepSpeed clips inside its step
            }
            ds_config.update({k: v for k, v in fill.items() if ds_config.get(k, "auto") == "auto"})
        self.dataset = train_dataset
        self.updates_per_epoch = max(
            len(train_dataset) // (args.rollout_batch_size * self.accelerator.num_processes), 1
        )
        self.total_updates = (
            args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * self.updates_per_epoch)
        )
        self.model = PolicyAndValue(policy, value_model)
        self.separate_backward = self.accelerator.distributed_type == DistributedType.NO  # see `learn`
        sharded = self.deepspeed is not None and self.deepspeed.zero_stage == 3  # the head is read outside a call
        self.chunked_logps = args.chunked_logps and not sharded and supports_chunked_head(policy) is None
        optimizer = self._make_optimizer(self.model)
        n_steps = self.total_updates * args.num_ppo_epochs * args.num_mini_batches
        scheduler = get_scheduler(args.lr_scheduler_type, optimizer, args.get_warmup_steps(n_steps), n_steps)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(self.model, optimizer, scheduler)
        self.ref_model = self._prepare_frozen(ref_model)
        if reward_scorer is not None:
            reward_scorer.model = self._prepare_frozen(reward_model)
        self.kl_ctl = make_kl_controller(args.kl_coef, args.kl_target, args.kl_horizon)
        self.accelerator.register_for_checkpointing(self.kl_ctl)
        self.generation_config = GenerationConfig(
            max_new_tokens=args.response_length,
            do_sample=True,
            temperature=args.temperature,
            top_k=args.top_k or None,
            top_p=args.top_p,
            eos_token_id=processing_class.eos_token_id,
            pad_token_id=processing_class.pad_token_id,
            return_dict_in_generate=True,
            output_logits=True,
        )
        self.state, self.truncated_prompts = TrainerState(), 0  # global_step = updates done

    def _make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimizer transformers' Trainer builds from the same arguments: `args.optim` (by default fused AdamW,
        one kernel per parameter and no temporaries), `learning_rate`, `adam_*`, and `weight_decay` except on biases
        and norms."""
        decay = set(Trainer.get_decay_parameter_names(self, model))  # uses nothing of the Trainer instance
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in trainable if n in decay], "weight_decay": self.args.weight_decay},
            {"params": [p for n, p in trainable if n not in decay], "weight_decay": 0.0},
        ]
        optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, model)
        return optimizer_cls([g for g in groups if g["params"]], **kwargs)

    def _prepare_frozen(self, model: PreTrainedModel | None):
        """A model that is only evaluated (reference, reward): sharded like the policy under DeepSpeed ZeRO-3 (TRL's
        `prepare_deepspeed`; a replica under ZeRO-1/2), else moved to the device."""
        if model is None:
            return None
        if self.deepspeed is not None:
            return prepare_deepspeed(model, self.accelerator)
        return model.to(self.accelerator.device).eval()

    # ----- data -----------------------------------------------------------------------------------------------
    def _collate(self, rows: list[dict]) -> dict[str, Any]:
        """Chat-template (when conversational), cut from the left to `max_prompt_length`, left-pad."""
        ids = []
        for row in rows:
            prompt = row["prompt"]
            text = (
                self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
                if isinstance(prompt, list)
                else prompt
            )
            tokens = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(tokens) > self.args.max_prompt_length:
                self.truncated_prompts += 1
                tokens = tokens[-self.args.max_prompt_length :]
            ids.append(tokens)
        width = max(map(len, ids))
        queries = torch.full((len(ids), width), self.tokenizer.pad_token_id, dtype=torch.long)
        query_mask = torch.zeros_like(queries)
        for i, tokens in enumerate(ids):
            queries[i, width - len(tokens) :], query_mask[i, width - len(tokens) :] = torch.tensor(tokens), 1
        return {"queries": queries, "query_mask": query_mask, "prompts": [row["prompt"] for row in rows]}

    def _batches(self, epoch: int) -> DataLoader:
        generator = torch.Generator().manual_seed(self.args.seed + epoch)  # same order on resume
        loader = DataLoader(
            self.dataset,
            batch_size=self.args.rollout_batch_size,
            shuffle=True,
            drop_last=True,
            collate_fn=self._collate,
            generator=generator,
        )
        return self.accelerator.prepare_data_loader(loader)

    # ----- forward passes --------------------------------------------------------------------------------------
    @staticmethod
    def _inputs(queries, query_mask, responses, mask):
        input_ids = torch.cat([queries, responses], 1)
        attention_mask = torch.cat([query_mask, mask], 1)
        position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)  # left padding: positions start at the prompt
        return input_ids, attention_mask, position_ids

    def _logprobs(self, logits: torch.Tensor, responses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return selective_log_softmax_and_entropy(logits.float() / self.args.temperature, responses)

    @contextlib.contextmanager
    def _reference(self) -> Iterator[PreTrainedModel]:
        """The reference policy: the frozen copy, or with a peft policy the same weights with adapters disabled."""
        if self.ref_model is not None:
            yield self.ref_model
            return
        policy = self.accelerator.unwrap_model(self.model).policy
        with policy.disable_adapter():
            yield policy

    # ----- one update ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def make_experience(self, batch: dict[str, Any]) -> tuple[Experience, list[str]]:
        """Sample responses and score them; per-token rewards and whitened GAE advantages."""
        args, eos = self.args, self.tokenizer.eos_token_id
        queries, query_mask = batch["queries"], batch["query_mask"]
        self.model.eval()
        with unwrap_model_for_generation(self.model, self.accelerator) as unwrapped, self.accelerator.autocast():
            # The sampling pass already computes the policy's logits at every response token: keep them rather
            # than running the policy again (the log-probs match a fresh forward pass to float rounding).
            generated = unwrapped.policy.generate(
                input_ids=queries, attention_mask=query_mask, generation_config=self.generation_config
            )
            responses, logits = generated.sequences[:, queries.shape[1] :], torch.stack(generated.logits, 1)
            del generated
            mask = core.response_mask(responses, eos)
            responses = responses.masked_fill(mask == 0, self.tokenizer.pad_token_id)
            inputs, n = self._inputs(queries, query_mask, responses, mask), responses.shape[1]
            values = value_forward(unwrapped.value_model, *inputs, n_response=n)
            full = args.kl_estimator == "full"  # the exact KL needs both distributions whole
            with self._reference() as reference:
                if self.chunked_logps and not full:
                    ref_logits = None
                    ref_logprobs, _ = response_logprobs(
                        reference, *inputs, responses, args.temperature, chunked=True, entropy=False
                    )
                else:
                    keys = ("input_ids", "attention_mask", "position_ids")
                    ref_logits = reference(**dict(zip(keys, inputs)), logits_to_keep=n + 1, use_cache=False).logits
                    ref_logits = ref_logits[:, :-1]
                    ref_logprobs = self._logprobs(ref_logits, responses)[0]
        logprobs, entropy = self._logprobs(logits, responses)
        kl = kl_per_token(
            logprobs,
            ref_logprobs,
            args.kl_estimator,
            logits / args.temperature if full else None,
            ref_logits / args.temperature if full else None,
        )
        kl = kl * mask

        texts = self.tokenizer.batch_decode(responses, skip_special_tokens=True)
        prompts = batch["prompts"]
        completions = [
            [{"role": "assistant", "content": t}] if isinstance(p, list) else t for p, t in zip(prompts, texts)
        ]
        scores = score(self.reward_funcs, prompts, completions, args.reward_weights).to(logprobs.device)
        has_eos = (responses == eos).any(1)
        if args.missing_eos_penalty is not None:
            scores = scores - args.missing_eos_penalty * (~has_eos).float()

        rewards = core.per_token_rewards(
            scores, kl if args.kl_placement == "reward" else torch.zeros_like(kl), self.kl_ctl.value, mask
        )
        if args.whiten_rewards:
            rewards = core.masked_whiten(rewards, mask, shift_mean=False)
        advantages, returns = core.gae(rewards, values, mask, args.gamma, args.lam)
        advantages = core.masked_whiten(advantages, mask)
        experience = Experience(
            queries,
            query_mask,
            responses,
            mask,
            logprobs,
            ref_logprobs,
            values * mask,
            scores,
            kl,
            advantages,
            returns,
            entropy,
        )
        return experience, texts

    def learn(self, exp: Experience) -> dict[str, float]:
        """`num_ppo_epochs` passes over the rollout batch in `num_mini_batches` optimizer steps.

        In a single process the actor's and the critic's losses are back-propagated one after the other: their
        parameters are disjoint, so the gradients are the same as one backward of the sum, and the actor's
        activations are freed before the critic's forward pass (the peak holds one model's activations, not two).
        Distributed wrappers (DDP, DeepSpeed) expect one backward per forward of the wrapped module: one sum there.
        """
        args, stats = self.args, defaultdict(list)
        self.model.train()
        micro = args.per_device_train_batch_size
        one_by_one = self.separate_backward
        chunked = self.chunked_logps and not args.entropy_coef  # an entropy bonus needs the entropy's gradient
        for _ in range(args.num_ppo_epochs):
            order = torch.randperm(len(exp.scores), device=exp.scores.device)
            for start in range(0, len(order), micro):
                mb = exp.select(order[start : start + micro])
                inputs, n = self._inputs(mb.queries, mb.query_mask, mb.responses, mb.mask), mb.responses.shape[1]
                with self.accelerator.accumulate(self.model), self.accelerator.autocast():
                    if one_by_one:
                        policy = self.model.policy
                        logprobs = response_logprobs(policy, *inputs, mb.responses, args.temperature, chunked)
                        actor_loss, actor_stats = self._actor_loss(*logprobs, mb)
                        self.accelerator.backward(actor_loss)
                        values = value_forward(self.model.value_model, *inputs, n)
                        critic_loss, critic_stats = self._critic_loss(values, mb)
                        loss = actor_loss.detach() + critic_loss
                    else:
                        logprobs, entropy, values = self.model(*inputs, mb.responses, args.temperature, chunked)
                        actor_loss, actor_stats = self._actor_loss(logprobs, entropy, mb)
                        critic_loss, critic_stats = self._critic_loss(values, mb)
                        loss = actor_loss + critic_loss
                    self._check_finite(loss)
                    self.accelerator.backward(critic_loss if one_by_one else loss)
                    if self.accelerator.sync_gradients and args.max_grad_norm:
                        self.accelerator.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
                    self.optimizer.step()
                    if self.accelerator.sync_gradients:
                        self.scheduler.step()
                    self.optimizer.zero_grad()
                for key, value in {**actor_stats, **critic_stats}.items():
                    stats[key].append(value.detach().float())
        return {k: self.accelerator.gather(torch.stack(v).mean()).mean().item() for k, v in stats.items()}

    def _actor_loss(
        self, logprobs: torch.Tensor, entropy: torch.Tensor, mb: Experience
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Clipped policy loss, minus the entropy bonus, plus the KL term when the KL is placed in the loss."""
        args = self.args
        pg_loss, pg_stats = core.policy_loss(logprobs, mb.logprobs, mb.advantages, mb.mask, args.cliprange)
        entropy_mean = core.masked_mean(entropy, mb.mask)
        loss = pg_loss - args.entropy_coef * entropy_mean
        if args.kl_placement == "loss":
            kl = kl_per_token(logprobs, mb.ref_logprobs, args.kl_estimator)
            loss = loss + self.kl_ctl.value * core.masked_mean(kl, mb.mask)
        return loss, {**pg_stats, "loss/policy": pg_loss, "policy/entropy": entropy_mean}

    def _critic_loss(self, values: torch.Tensor, mb: Experience) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Clipped value loss, weighted by `vf_coef`."""
        vf_loss, vf_stats = core.value_loss(values, mb.values, mb.returns, mb.mask, self.args.cliprange_value)
        return self.args.vf_coef * vf_loss, {**vf_stats, "loss/value": vf_loss}

    def _rollout_stats(self, exp: Experience) -> dict[str, float]:
        g = self.accelerator.gather
        kl_sum = exp.kl.sum(1)
        return {
            "objective/entropy": g(core.masked_mean(exp.entropy, exp.mask, dim=1)).mean().item(),
            "objective/kl": g(kl_sum).mean().item(),
            "objective/scores": g(exp.scores).mean().item(),
            "objective/rlhf_reward": g(exp.scores - self.kl_ctl.value * kl_sum).mean().item(),
            "objective/kl_coef": self.kl_ctl.value,
            "val/mean": g(core.masked_mean(exp.values, exp.mask)).mean().item(),
            "response_length": g(exp.mask.sum(1).float()).mean().item(),
            "eos_fraction": g((exp.responses == self.tokenizer.eos_token_id).any(1).float()).mean().item(),
        }

    # ----- the loop --------------------------------------------------------------------------------------------
    def _check_finite(self, loss: torch.Tensor) -> None:
        """Stop before a NaN/inf loss reaches the weights (see trl_ext.guards); the last checkpoint stays good."""
        step = self.state.global_step + 1
        value = float("nan") if forced_nan(step) else loss.item()
        if not math.isfinite(value):
            raise NonFiniteError(non_finite_message("PPO loss", value, step, self.args.output_dir))

    def train(self, resume_from_checkpoint: str | bool | None = None) -> dict[str, float]:
        """Run PPO updates until `total_updates`, resuming from a checkpoint folder (or the latest, with True)."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
        if resume_from_checkpoint:
            self._load_checkpoint(resume_from_checkpoint)
        bar = tqdm(
            total=self.total_updates,
            initial=self.state.global_step,
            desc="PPO updates",
            disable=not self.accelerator.is_main_process,
        )
        while self.state.global_step < self.total_updates:
            epoch, skip = divmod(self.state.global_step, self.updates_per_epoch)
            loader = self.accelerator.skip_first_batches(self._batches(epoch), skip) if skip else self._batches(epoch)
            for batch in loader:
                start = time.perf_counter()
                exp, texts = self.make_experience(batch)
                stats = {**self._rollout_stats(exp), **self.learn(exp), "time/update_s": time.perf_counter() - start}
                self.kl_ctl.update(stats["objective/kl"], self.args.rollout_batch_size * self.accelerator.num_processes)
                self.state.global_step += 1
                self._log(stats, batch["prompts"], texts, exp.scores)
                bar.update(1)
                bar.set_postfix(score=f"{stats['objective/scores']:.3f}", kl=f"{stats['objective/kl']:.3f}")
                if self.args.save_steps and self.state.global_step % int(self.args.save_steps) == 0:
                    self._save_checkpoint()
                if self.state.global_step >= self.total_updates:
                    break
        bar.close()
        if self.truncated_prompts:
            logger.warning(
                "%d prompts were longer than max_prompt_length=%d and were cut from the left",
                self.truncated_prompts,
                self.args.max_prompt_length,
            )
        return {
            "updates": self.state.global_step,
            **{k: v for k, v in self.state.log_history[-1].items() if k != "samples"},
        }

    def _log(self, stats: dict[str, float], prompts, texts: list[str], scores: torch.Tensor) -> None:
        entry = {"step": self.state.global_step, **stats, "lr": self.scheduler.get_last_lr()[0]}
        if self.args.sample_every and self.state.global_step % self.args.sample_every == 0:
            entry["samples"] = [
                {"prompt": p if isinstance(p, str) else p[-1]["content"], "completion": t, "score": s}
                for p, t, s in zip(prompts[:4], texts[:4], scores[:4].tolist())
            ]
            table = "\n".join(
                f"  [{s['score']:+.3f}] {s['prompt'][:60]!r} -> {s['completion'][:80]!r}" for s in entry["samples"]
            )
            logger.info("Samples at update %d:\n%s", self.state.global_step, table)
        self.state.log_history.append(entry)
        if self.accelerator.is_main_process and self.state.global_step % max(int(self.args.logging_steps), 1) == 0:
            logger.info(
                "update %d: %s",
                self.state.global_step,
                {k: round(v, 4) for k, v in entry.items() if isinstance(v, float)},
            )

    # ----- checkpoints and outputs ------------------------------------------------------------------------------
    def _save_checkpoint(self) -> None:
        """Model, optimizer, scheduler, RNG and KL-controller state (accelerate), plus our step and history."""
        folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        self.accelerator.save_state(str(folder))
        if self.accelerator.is_main_process:
            state = {
                "update": self.state.global_step,
                "log_history": self.state.log_history,
                "truncated_prompts": self.truncated_prompts,
            }
            (folder / STATE_FILE).write_text(json.dumps(state))
            limit = self.args.save_total_limit
            if limit:
                older = sorted(folder.parent.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
                for old in older[:-limit]:
                    shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def _load_checkpoint(self, folder: str) -> None:
        logger.info("Resuming PPO from %s", folder)
        self.accelerator.load_state(folder)
        state = json.loads((Path(folder) / STATE_FILE).read_text())
        self.state.global_step, self.state.log_history = state["update"], state["log_history"]
        self.truncated_prompts = state.get("truncated_prompts", 0)

    def save_model(self, output_dir: str | Path) -> None:
        """The policy as a plain HF folder (adapters merged) with the tokenizer; the value model on request."""
        output_dir = Path(output_dir)
        self.accelerator.wait_for_everyone()
        unwrapped = self.accelerator.unwrap_model(self.model)
        with gathered_parameters(unwrapped, self.accelerator):  # ZeRO-3: the main process saves whole weights
            if self.accelerator.is_main_process:
                policy = unwrapped.policy
                policy = policy.merge_and_unload() if hasattr(policy, "merge_and_unload") else policy
                policy.save_pretrained(output_dir)
                self.tokenizer.save_pretrained(output_dir)
                if self.args.save_value_model:
                    value = unwrapped.value_model
                    value = value.merge_and_unload() if hasattr(value, "merge_and_unload") else value
                    value.save_pretrained(output_dir / "value_model")
                    self.tokenizer.save_pretrained(output_dir / "value_model")
        self.accelerator.wait_for_everyone()
