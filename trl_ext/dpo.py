"""Length-regularised DPO (R-DPO, Park et al. 2024, https://arxiv.org/abs/2403.19159) as the smallest extension of
TRL's DPOTrainer. R-DPO's margin is beta * (log-ratio chosen - log-ratio rejected) - alpha * (|y_w| - |y_l|).

Implementation: with precomputed reference log-probs (our recipes' default), shifting each precomputed reference
log-prob by (alpha / beta) * |y| subtracts exactly alpha * (|y_w| - |y_l|) from every loss that depends on the
margin (sigmoid, hinge, robust, ...); TRL's loss code is untouched, and alpha = 0 is TRL's DPO to the bit. The shift
is applied after TRL's cached precompute, so a cache made by plain DPO is never mistaken for R-DPO's or the reverse.
The logged `rewards/*` are then R-DPO's length-corrected implicit rewards. TRL's own LD-DPO (`ld_alpha`) stays
available beside it.
"""

from __future__ import annotations

from datasets import Dataset

from trl_ext._compat import DPOTrainer

# Losses whose only use of the log-ratios is their chosen-minus-rejected margin (where the shift is exactly R-DPO).
MARGIN_LOSSES = {"sigmoid", "hinge", "robust", "exo_pair", "bco_pair", "sppo_hard", "nca_pair", "discopop"}


class LengthRegularizedDPOTrainer(DPOTrainer):
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

    def _precompute_ref_logps(self, dataset: Dataset, name: str, batch_size: int) -> Dataset:
        dataset = super()._precompute_ref_logps(dataset, name, batch_size)
        if not self.rdpo_alpha:
            return dataset
        shift = self.rdpo_alpha / self.beta

        def lengthen(row: dict) -> dict:
            return {
                "ref_chosen_logps": row["ref_chosen_logps"] + shift * len(row["chosen_ids"]),
                "ref_rejected_logps": row["ref_rejected_logps"] + shift * len(row["rejected_ids"]),
            }

        return dataset.map(lengthen, desc=f"R-DPO length terms for {name} dataset")
