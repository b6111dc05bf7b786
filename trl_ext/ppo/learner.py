"""Learning, the second half of a PPO update (Schulman et al. 2017, https://arxiv.org/abs/1707.06347): `num_ppo_epochs`
passes over the rollout batch in shuffled micro-batches of `per_device_train_batch_size`, the clipped policy loss
(plus the entropy bonus and, with `kl_placement=loss`, the KL term) and the clipped value loss, one optimizer step
per `gradient_accumulation_steps` micro-batches, `num_mini_batches` steps per epoch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import torch
from accelerate import Accelerator, DistributedType
from torch import nn

from trl_ext.kl import kl_per_token
from trl_ext.models.heads import response_logprobs, value_forward
from trl_ext.ppo import core
from trl_ext.ppo.config import PPOConfig
from trl_ext.ppo.rollout import Experience, model_inputs


def actor_loss(
    logprobs: torch.Tensor,
    entropy: torch.Tensor,
    mb: Experience,
    args: PPOConfig,
    loss_kl_coef: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped policy loss, minus `entropy_coef` times the mean entropy, plus `loss_kl_coef` times the mean KL to the
    reference (nonzero only with `kl_placement=loss`). logprobs, entropy: (b, t)."""
    pg_loss, pg_stats = core.policy_loss(logprobs, mb.logprobs, mb.advantages, mb.mask, args.cliprange)
    entropy_mean = core.masked_mean(entropy, mb.mask)
    loss = pg_loss - args.entropy_coef * entropy_mean
    if loss_kl_coef:
        kl = kl_per_token(logprobs, mb.ref_logprobs, args.kl_estimator)
        loss = loss + loss_kl_coef * core.masked_mean(kl, mb.mask)
    return loss, {**pg_stats, "loss/policy": pg_loss, "policy/entropy": entropy_mean}


def critic_loss(values: torch.Tensor, mb: Experience, args: PPOConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss weighted by `vf_coef`. values: (b, t)."""
    vf_loss, vf_stats = core.value_loss(values, mb.values, mb.returns, mb.mask, args.cliprange_value)
    return args.vf_coef * vf_loss, {**vf_stats, "loss/value": vf_loss}


class Learner:
    """PPO epochs over a rollout batch, for a prepared `PolicyAndValue` with its optimizer and scheduler.

    In a single process the actor's and the critic's losses are back-propagated one after the other
    (`separate_backward`): their parameters are disjoint, so the gradients are those of one backward of the sum, and
    the actor's activations are freed before the critic's forward pass (the peak holds one model's activations, not
    two). Distributed wrappers (DDP, DeepSpeed) expect one backward per forward of the wrapped module: one sum there.
    `check_finite(loss)` raises before a non-finite loss reaches the weights.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler,
        args: PPOConfig,
        chunked: bool,
        check_finite: Callable[[torch.Tensor], None],
    ):
        self.accelerator, self.model, self.optimizer, self.scheduler, self.args = (
            accelerator,
            model,
            optimizer,
            scheduler,
            args,
        )
        self.chunked = chunked and not args.entropy_coef  # an entropy bonus needs the entropy's gradient
        self.check_finite = check_finite
        self.separate_backward = accelerator.distributed_type == DistributedType.NO

    def learn(self, exp: Experience, kl_coef: float) -> dict[str, float]:
        """Train on `exp`; the mean of each loss statistic over the micro-batches, averaged across processes."""
        args, acc, stats = self.args, self.accelerator, defaultdict(list)
        _, loss_kl_coef = core.kl_coefs(kl_coef, args.kl_placement)
        self.model.train()
        for _ in range(args.num_ppo_epochs):
            order = torch.randperm(len(exp.scores), device=exp.scores.device)
            for start in range(0, len(order), args.per_device_train_batch_size):
                mb = exp.select(order[start : start + args.per_device_train_batch_size])
                inputs = model_inputs(mb.queries, mb.query_mask, mb.responses, mb.mask)
                with acc.accumulate(self.model), acc.autocast():
                    if self.separate_backward:
                        policy = self.model.policy
                        logprobs, entropy = response_logprobs(
                            policy, *inputs, mb.responses, args.temperature, self.chunked
                        )
                        a_loss, a_stats = actor_loss(logprobs, entropy, mb, args, loss_kl_coef)
                        acc.backward(a_loss)
                        values = value_forward(self.model.value_model, *inputs, mb.responses.shape[1])
                        c_loss, c_stats = critic_loss(values, mb, args)
                        loss = a_loss.detach() + c_loss
                    else:
                        logprobs, entropy, values = self.model(*inputs, mb.responses, args.temperature, self.chunked)
                        a_loss, a_stats = actor_loss(logprobs, entropy, mb, args, loss_kl_coef)
                        c_loss, c_stats = critic_loss(values, mb, args)
                        loss = a_loss + c_loss
                    self.check_finite(loss)
                    acc.backward(c_loss if self.separate_backward else loss)
                    if acc.sync_gradients and args.max_grad_norm:
                        acc.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
                    self.optimizer.step()
                    if acc.sync_gradients:
                        self.scheduler.step()
                    self.optimizer.zero_grad()
                for key, value in {**a_stats, **c_stats, "loss/total": loss}.items():
                    stats[key].append(value.detach().float())
        return {k: acc.gather(torch.stack(v).mean()).mean().item() for k, v in stats.items()}
