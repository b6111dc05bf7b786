"""TRL's DPOTrainer, leaner and length-aware: `LeanDPOTrainer` (the recipes' default) and `LengthRegularizedDPOTrainer`.

Length-regularised DPO (R-DPO, Park et al. 2024, https://arxiv.org/abs/2403.19159) as the smallest extension of
TRL's DPOTrainer. R-DPO's margin is beta * (log-ratio chosen - log-ratio rejected) - alpha * (|y_w| - |y_l|).

Implementation: with precomputed reference log-probs (our recipes' default), shifting each precomputed reference
log-prob by (alpha / beta) * |y| subtracts exactly alpha * (|y_w| - |y_l|) from every loss that depends on the
margin (sigmoid, hinge, robust, ...); TRL's loss code is untouched, and alpha = 0 is TRL's DPO to the bit. The shift
is applied after TRL's cached precompute, so a cache made by plain DPO is never mistaken for R-DPO's or the reverse.
The length term is a training regulariser: it shifts the training split only. The logged training `rewards/*` are
R-DPO's length-corrected margins; the evaluation's are the model's implicit rewards beta * log(pi / pi_ref), as in
plain DPO, so validation accuracy compares across alphas (docs/results.md's study). TRL's own LD-DPO (`ld_alpha`)
stays available beside it.
"""

from __future__ import annotations

import logging

import torch
from datasets import Dataset

from trl_ext._compat.hooks import DPOTrainerHooks
from trl_ext.logprobs import DEFAULT_CHUNK_TOKENS, DEFAULT_PACK_WIDTH, add_chunked_lm_head

logger = logging.getLogger(__name__)

# Losses whose only use of the log-ratios is their chosen-minus-rejected margin (where the shift is exactly R-DPO).
MARGIN_LOSSES = {"sigmoid", "hinge", "robust", "exo_pair", "bco_pair", "sppo_hard", "nca_pair", "discopop"}


class LengthRegularizedDPOTrainer(DPOTrainerHooks):
    """`DPOTrainer` plus `rdpo_alpha` (R-DPO's alpha, per token of length difference; 0 disables it)."""

    def __init__(self, *args, rdpo_alpha: float = 0.0, **kwargs):
        self.rdpo_alpha = rdpo_alpha
        config = kwargs.get("args")
        if rdpo_alpha:
            if config is None or not config.precompute_ref_log_probs:
                raise ValueError("rdpo_alpha needs trainer.precompute_ref_log_probs=true (the shift is applied there)")
            if not set(config.loss_type) <= MARGIN_LOSSES or config.f_divergence_type != "reverse_kl":
                raise ValueError(f"rdpo_alpha works with the margin losses {sorted(MARGIN_LOSSES)} and reverse KL")
        super().__init__(*args, **kwargs)

    def after_ref_logps(self, dataset: Dataset, name: str) -> Dataset:
        dataset = super().after_ref_logps(dataset, name)
        if not self.rdpo_alpha or name != "train":  # evaluation splits keep the plain implicit reward
            return dataset
        shift = self.rdpo_alpha / self.beta

        def lengthen(row: dict) -> dict:
            return {
                "ref_chosen_logps": row["ref_chosen_logps"] + shift * len(row["chosen_ids"]),
                "ref_rejected_logps": row["ref_rejected_logps"] + shift * len(row["rejected_ids"]),
            }

        return dataset.map(lengthen, desc=f"R-DPO length terms for {name} dataset")


class LeanDPOTrainer(LengthRegularizedDPOTrainer):
    """DPO with TRL's losses and TRL's data pipeline, computing less (measured in scripts/bench_dpo.py).

    - `chunked_logps` (default on): sequence log-probs of the policy and the reference from the final hidden states
      of the completion tokens only, through torch's chunked `linear_cross_entropy`, never the [tokens, vocab]
      logits (`trl_ext.logprobs`). Off: TRL's fused head (on CPU it scores every position, prompt and padding too).
    - `packing` (default on, with `chunked_logps`): each forward runs the batch's chosen and rejected sequences
      repacked into as few rows of `pack_width` tokens as they fit in, position ids restarting per sequence, instead
      of all padded to the longest (`trl_ext.logprobs.PackPlan`); the log-probs are the padded computation's. Used
      where the model keeps packed sequences apart (checked once on a probe; transformers' sdpa, eager and flash
      attention do).
    - Length grouping: with TRL's `train_sampling_strategy="group_by_length"` a `length` column (prompt plus the
      longer response, in tokens) is added for transformers' `LengthGroupedSampler`, so a batch holds pairs of
      similar length and pads less. Every run logs `padding_fraction`, the share of padded slots computed (after
      packing).
    - `frozen_bf16` (default on) with LoRA and bf16 autocast: the frozen base weights are held in bfloat16 (the
      adapters stay float32, as peft makes them): half the base's memory, and no float32-to-bf16 cast of every weight
      at every forward (a fifth of a CPU step's time otherwise). The merged model is saved in bfloat16.
    - Under ZeRO-3 or FSDP (sharded parameters) TRL's own head computes the log-probs, unpacked.
    - Everything else (losses, reference handling, LoRA, DeepSpeed, R-DPO's `rdpo_alpha`) is TRL's or inherited.
    """

    def __init__(
        self,
        *args,
        chunked_logps: bool = True,
        logps_chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        packing: bool = True,
        pack_width: int = DEFAULT_PACK_WIDTH,
        frozen_bf16: bool = True,
        **kwargs,
    ):
        config = kwargs.get("args")
        model = kwargs.get("model")
        lora_bf16 = frozen_bf16 and kwargs.get("peft_config") is not None and config is not None and config.bf16
        if lora_bf16 and isinstance(model, torch.nn.Module) and model.dtype == torch.float32:
            model.to(torch.bfloat16)
        self.chunked_logps = chunked_logps and not (config is not None and config.use_weighting)
        if chunked_logps and not self.chunked_logps:
            logger.warning("chunked_logps is off: TRL's use_weighting needs the full distribution (log_sum_sq_probs)")
        self.logps_chunk_tokens = logps_chunk_tokens
        self.packing, self.pack_width = packing, pack_width
        self._head_patched = False
        super().__init__(*args, **kwargs)

    def _patch_heads(self) -> None:
        """Swap in the chunked log-prob head once, after TRL added its own and before the first log-prob pass."""
        if self._head_patched or not self.chunked_logps:
            return
        self._head_patched = True
        plugin = self.accelerator.state.deepspeed_plugin
        if self.is_fsdp_enabled or (plugin is not None and plugin.zero_stage == 3):
            # sharded parameters are gathered around module calls; the chunked head reads the weight directly
            logger.warning("Chunked log-probs and packing not used: the parameters are sharded (ZeRO-3 or FSDP)")
            self.chunked_logps = False
            return
        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        for m, stats in ((model, True), (self.ref_model, False)):  # the policy's metrics: entropy, logits, top-1
            if m is not None and not add_chunked_lm_head(
                m, self.logps_chunk_tokens, stats, self.packing, self.pack_width
            ):
                self.chunked_logps = False  # a model that scales its logits: TRL's head serves it
                return

    def before_ref_logps(self) -> None:
        self._patch_heads()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self._patch_heads()
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mask = inputs["attention_mask"]
        causal_lm = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        real, slots = getattr(causal_lm, "slot_counts", (mask.sum().item(), mask.numel()))  # TRL's head: padded
        self.log_metric("padding_fraction", 1.0 - real / max(slots, 1))
        return result

    def after_prepare_dataset(self, dataset, args, name: str):
        column = args.length_column_name
        if args.train_sampling_strategy != "group_by_length" or not isinstance(dataset, Dataset):
            return dataset
        if column in dataset.column_names or "prompt_ids" not in dataset.column_names:
            return dataset

        def length(row: dict) -> dict:
            return {column: len(row["prompt_ids"]) + max(len(row["chosen_ids"]), len(row["rejected_ids"]))}

        return dataset.map(length, desc=f"Lengths for grouping the {name} dataset")

    def extra_signature_columns(self) -> list[str]:
        return [self.args.length_column_name] if self.args.train_sampling_strategy == "group_by_length" else []
