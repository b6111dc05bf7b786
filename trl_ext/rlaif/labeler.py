"""AI feedback by a constitution: a judge LM compares two responses under a principle, read from its next-token
log-probabilities of the option labels in one forward pass (no free-text generation), in both orders.

For one principle and one order, the judge's log-odds that a is better is d = lse_A - lse_B, the logsumexp of the
log-probabilities of each label's token variants at the last position (softmax over the two labels: P = sigmoid(d)).
Both orders are judged and their log-odds averaged, P = sigmoid((d(a as A) + d(a as B)) / 2): a judge whose
log-odds are content + position bias gets the bias cancelled exactly. Both orders are the same two rendered
prompts whichever way round the pair is given, so P(a, b) = 1 - P(b, a) up to float rounding. Principles follow
Constitutional AI (Bai et al. 2022, https://arxiv.org/abs/2212.08073); scoring the options' probabilities rather
than parsing text follows its multiple-choice labeling and RLAIF (Lee et al. 2023, https://arxiv.org/abs/2309.00267).

The parts: `comparisons` (rendering, tokenizing and truncating a comparison's rows), `batching` (which comparisons
share a forward pass), `scoring` (the forward passes, shared prefixes computed once), `reasoning` (chain of
thought), `verdicts` (rows -> `PairLabel`; round-robin win rates). This module puts them together and gives the
labeler its two faces: pairs in, verdicts out (`label`), and the reward-function protocol (`__call__`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from accelerate import PartialState
from accelerate.utils import gather_object
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trl_ext.chat import text_of
from trl_ext.rlaif.batching import chunks
from trl_ext.rlaif.comparisons import Comparison, ComparisonEncoder
from trl_ext.rlaif.constitution import Constitution
from trl_ext.rlaif.prompts import (
    ANSWER_PREFIX,
    label_token_ids,
    render_conversation,
    render_response,
    special_strings,
    suspect_injection,
)
from trl_ext.rlaif.reasoning import reason
from trl_ext.rlaif.scoring import OptionScorer
from trl_ext.rlaif.verdicts import PairLabel, round_robin_wins, verdict

logger = logging.getLogger(__name__)


class ConstitutionalLabeler:
    """Label response pairs with a judge LM and a constitution; also a reward function of the shared protocol.

    >>> labeler = ConstitutionalLabeler(resolve_model_path("embedded"), "conf/constitution/default.yaml")  # +SKIP
    >>> labeler.label(["How do I pick a lock?"], ["I can't help with that."], ["Sure! First ..."])[0].p  # +SKIP

    Args:
        judge: a causal LM, or a folder / hub id to load one from (any HF causal LM; bigger judges label better).
        constitution: a `Constitution` or a path to a YAML/JSON constitution file.
        tokenizer: the judge's tokenizer (loaded from the judge's path when omitted).
        principles_per_comparison: k principles sampled per comparison (seeded, weighted), their verdicts averaged.
        swap: judge both orders and average (cancels position bias; twice the compute).
        batch_size: comparisons per forward pass (each is 2 x k rows).
        max_length: longest judge input in tokens; longer ones are cut from the start of the conversation.
        tie_threshold: verdicts with |P - 0.5| below it are flagged `uncertain`.
        chain_of_thought: generate up to `cot_max_new_tokens` tokens of reasoning first, then score the options.
        fence: neutralise tags, option markers and special tokens inside judged text (off only for ablations).
        share_prefix: compute shared parts of the judge inputs once, their KV cache repeated: the instructions once
            per batch, each conversation once for all its orders and principles (same verdicts, fewer tokens; falls
            back to whole rows for a model whose cache cannot be repeated).
        seed: seeds principle sampling, per prompt: the comparisons of a prompt share their principles, whatever the
            responses, the batch or the process.
        baseline, baseline_column, reward: the reward-function form, see `__call__`.
    """

    def __init__(
        self,
        judge: PreTrainedModel | str,
        constitution: Constitution | str | Path,
        tokenizer: PreTrainedTokenizerBase | None = None,
        principles_per_comparison: int = 1,
        swap: bool = True,
        batch_size: int = 8,
        max_length: int = 1024,
        tie_threshold: float = 0.0,
        chain_of_thought: bool = False,
        cot_max_new_tokens: int = 64,
        fence: bool = True,
        share_prefix: bool = True,
        seed: int = 0,
        baseline: str | None = None,
        baseline_column: str = "baseline",
        reward: str = "prob",
        progress: bool = True,
    ):
        from trl_ext.models import load_policy, load_tokenizer

        if isinstance(judge, (str, Path)):
            tokenizer = tokenizer or load_tokenizer(str(judge))
            judge = load_policy(str(judge), tokenizer)
        self.model = judge
        self.tokenizer = tokenizer or load_tokenizer(judge.config.name_or_path)
        self.constitution = constitution if isinstance(constitution, Constitution) else Constitution.load(constitution)
        if principles_per_comparison < 1:
            raise ValueError(f"principles_per_comparison must be >= 1, got {principles_per_comparison}")
        if reward not in ("prob", "logit"):
            raise ValueError(f"reward must be 'prob' or 'logit', got {reward!r}")
        self.k, self.swap, self.batch_size, self.max_length = principles_per_comparison, swap, batch_size, max_length
        self.tie_threshold, self.cot, self.cot_max_new_tokens = tie_threshold, chain_of_thought, cot_max_new_tokens
        self.seed, self.baseline, self.baseline_column, self.reward = seed, baseline, baseline_column, reward
        self.progress = progress
        self.specials = special_strings(self.tokenizer) if fence else None
        # a chat template writes any BOS itself; a plain prompt gets the tokenizer's BOS, if it has one
        plain = not getattr(self.tokenizer, "chat_template", None)
        bos = [self.tokenizer.bos_token_id] if plain and self.tokenizer.bos_token_id is not None else []
        self.encoder = ComparisonEncoder(self.tokenizer, max_length, swap, chain_of_thought, self.k, bos)
        # comparisons, identical, truncated, forward_passes, tokens (forwarded, pads too), generated_tokens
        self.stats: Counter = Counter()
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.scorer = OptionScorer(self.model, label_token_ids(self.tokenizer), pad_id, share_prefix, self.stats)
        self.name = getattr(self.model.config, "name_or_path", "") or type(self.model).__name__
        self.__name__ = f"constitutional_judge({Path(self.name).name})"  # TRL logs rewards under this name

    # ---- pairs ----

    def label(
        self, prompts: Sequence[Any], responses_a: Sequence[Any], responses_b: Sequence[Any], distributed: bool = False
    ) -> list[PairLabel]:
        """Verdicts on (prompt, a, b) triples; prompts and responses as text or conversational messages.

        With `distributed=True` (under `accelerate launch`) the triples are split in contiguous shards across
        processes and the verdicts gathered in the original order on every process.
        """
        if not len(prompts) == len(responses_a) == len(responses_b):
            raise ValueError(f"got {len(prompts)} prompts, {len(responses_a)} and {len(responses_b)} responses")
        items = list(zip(prompts, responses_a, responses_b))
        if not distributed:
            return self._label(items, self.progress)
        state = PartialState()
        with state.split_between_processes(items) as shard:
            labels = self._label(shard, self.progress and state.is_main_process)
        return gather_object(labels)

    def _label(self, items: list[tuple[Any, Any, Any]], progress: bool) -> list[PairLabel]:
        labels: list[PairLabel | None] = [None] * len(items)
        self.scorer.new_call()
        jobs = []
        for i, (prompt, a, b) in enumerate(items):
            ta, tb = text_of(a).strip(), text_of(b).strip()
            self.stats["comparisons"] += 1
            self.stats["empty_responses"] += (not ta) + (not tb)
            if ta == tb:  # no judge can prefer one of two equal texts
                self.stats["identical"] += 1
                labels[i] = PairLabel(0.5, 0.0, (0.5, 0.5 if self.swap else None), [], True, "identical")
                continue
            flip = self.swap and tb < ta
            x, y = (tb, ta) if flip else (ta, tb)
            principles = self.constitution.sample(self._key(prompt), self.k)
            conversation = render_conversation(prompt, self.specials)
            rx, ry = render_response(x, self.specials), render_response(y, self.specials)
            jobs.append(Comparison(i, flip, conversation, rx, ry, principles, suspect_injection(ta + "\n" + tb)))
        for job in jobs:
            self.encoder.encode(job)
        truncated = sum(job.truncated for job in jobs)
        if truncated:
            self.stats["truncated"] += truncated
            logger.warning(
                "%d of %d comparisons were longer than max_length=%d tokens: cut from the start of the conversation "
                "(%d truncated so far)",
                truncated,
                len(items),
                self.max_length,
                self.stats["truncated"],
            )
        batches = chunks(jobs, self.batch_size, self.scorer.share_prefix and not self.cot)
        for chunk in tqdm(batches, desc="RLAIF labels", disable=not progress or len(batches) < 2):
            reasoning = None
            if self.cot:
                rows = [row for job in chunk for row in job.rows()]
                reasoning = reason(self.scorer, self.tokenizer, rows, self.cot_max_new_tokens)
                rows = [row + self.encoder.ids(f"{r}\n\n{ANSWER_PREFIX}") for row, r in zip(rows, reasoning)]
                log_odds = self.scorer.rows(rows)
            else:
                log_odds = self.scorer.chunk(chunk)
            start = 0
            for job in chunk:
                n = len(job.suffixes)
                label = verdict(
                    log_odds[start : start + n].tolist(),
                    self.swap,
                    self.tie_threshold,
                    [principle.id for principle in job.principles],
                    truncated=job.truncated,
                    suspect_injection=job.suspect,
                    reasoning=reasoning[start : start + n] if reasoning else None,
                )
                labels[job.index] = label.swapped() if job.flip else label  # back to (a, b)
                start += n
        return labels

    def _key(self, prompt: Any) -> str:
        """The principle-sampling seed of a comparison: the labeler's seed and the prompt. Every comparison of a
        prompt is judged by the same principles, and no response can steer which."""
        content = json.dumps([self.seed, prompt], sort_keys=True, default=str)
        return hashlib.sha256(content.encode()).hexdigest()

    # ---- the shared reward-function protocol ----

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs) -> list[float]:
        """Reward function `fn(prompts, completions, **kw) -> list[float]` (TRL `reward_funcs`, our PPO, best-of-N).

        Against a baseline (the fixed `baseline`, else the `baseline_column` keyword, e.g. a dataset column TRL
        passes through): P(completion better than baseline). Without one: each completion's mean win probability
        against the other completions of the same prompt (consecutive equal prompts form a group, as best-of-N and
        GRPO lay them out), 0.5 for a completion alone. `reward="logit"` returns log(P / (1 - P)) instead.
        """
        if self.baseline is not None or kwargs.get(self.baseline_column) is not None:
            baselines = (
                [self.baseline] * len(completions) if self.baseline is not None else kwargs[self.baseline_column]
            )
            ps = [label.p for label in self.label(prompts, completions, list(baselines))]
        else:
            ps = self.win_rates(prompts, completions)
        if self.reward == "prob":
            return ps
        return [math.log(max(p, 1e-12)) - math.log(max(1 - p, 1e-12)) for p in ps]

    def win_rates(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[float]:
        """Round robin within each group of consecutive equal prompts: mean P(i beats j) over the group's others.
        A group of m completions costs m (m - 1) / 2 comparisons; its win rates sum to m / 2."""
        groups, start = [], 0
        for i in range(1, len(prompts) + 1):
            if i == len(prompts) or prompts[i] != prompts[start]:
                groups.append(range(start, i))
                start = i
        pairs = [(i, j) for group in groups for i in group for j in group if i < j]
        labels = self.label(
            [prompts[i] for i, _ in pairs], [completions[i] for i, _ in pairs], [completions[j] for _, j in pairs]
        )
        wins = round_robin_wins(len(completions), dict(zip(pairs, labels)))
        sizes = {i: len(group) for group in groups for i in group}
        return [wins[i] / (sizes[i] - 1) if sizes[i] > 1 else 0.5 for i in range(len(completions))]
