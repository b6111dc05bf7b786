"""AI feedback by a constitution: a judge LM compares two responses under a principle, read from its next-token
log-probabilities of the option labels in one forward pass (no free-text generation), in both orders.

For one principle and one order, the judge's log-odds that a is better is d = lse_A - lse_B, the logsumexp of the
log-probabilities of each label's token variants at the last position (softmax over the two labels: P = sigmoid(d)).
Both orders are judged and their log-odds averaged, P = sigmoid((d(a as A) + d(a as B)) / 2): a judge whose
log-odds are content + position bias gets the bias cancelled exactly. Both orders are the same two rendered
prompts whichever way round the pair is given, so P(a, b) = 1 - P(b, a) up to float rounding. Principles follow
Constitutional AI (Bai et al. 2022, https://arxiv.org/abs/2212.08073); scoring the options' probabilities rather
than parsing text follows its multiple-choice labeling and RLAIF (Lee et al. 2023, https://arxiv.org/abs/2309.00267).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import logging
import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trl_ext._compat import pad
from trl_ext.rlaif.constitution import Constitution, Principle
from trl_ext.rlaif.prompts import (
    ANSWER_PREFIX,
    TRUNCATED,
    judge_prompt,
    label_token_ids,
    render_conversation,
    render_response,
    special_strings,
    split_shared,
    suspect_injection,
    text_of,
)

logger = logging.getLogger(__name__)
SLACK = 8  # tokens kept free when shortening, for merges at the cut
_ANSWER_IN_REASONING = re.compile(r"(?:the )?better (?:response|reply) is", re.IGNORECASE)
_ANSWER_STARTS = [f"{b}etter {r} is" for b in "bB" for r in ("response", "reply")]


@dataclass
class PairLabel:
    """The verdict on (prompt, a, b).

    p: P(a better than b) = sigmoid(log_odds).
    log_odds: the judge's log-odds that a is better, averaged over principles and over the two orders.
    p_orders: P(a better) with a shown as (A), and with a shown as (B) (None without swap), each averaged over
        principles in log-odds. Their disagreement on the winner is a position flip.
    principles: ids of the principles used. uncertain: |p - 0.5| < the labeler's tie threshold.
    skipped: "identical" when decided without the judge. reasoning: chain-of-thought texts, if any.
    """

    p: float
    log_odds: float
    p_orders: tuple[float, float | None]
    principles: list[str]
    uncertain: bool
    skipped: str | None = None
    truncated: bool = False
    suspect_injection: bool = False
    reasoning: list[str] | None = None

    @property
    def chosen(self) -> str:
        """ "a" or "b" (a on an exact tie)."""
        return "a" if self.p >= 0.5 else "b"

    @property
    def rejected(self) -> str:
        return "b" if self.chosen == "a" else "a"

    @property
    def margin(self) -> float:
        """P(chosen better) - P(rejected better) = |2p - 1|, in [0, 1]."""
        return abs(2 * self.p - 1)

    @property
    def position_flip(self) -> bool:
        """True when the winner changes with the order of presentation."""
        first, second = self.p_orders
        return second is not None and (first > 0.5) != (second > 0.5)

    def swapped(self) -> PairLabel:
        """The same verdict for (prompt, b, a)."""
        first, second = self.p_orders
        orders = (1 - second, 1 - first) if second is not None else (1 - first, None)
        return replace(self, p=1 - self.p, log_odds=-self.log_odds, p_orders=orders)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "chosen": self.chosen, "margin": self.margin, "position_flip": self.position_flip}


@dataclass
class _Job:
    """One comparison that needs the judge, in canonical order (x, y). Its judge inputs are the instructions (the
    same for every comparison), the conversation, then each (principle, order) suffix, principle-major."""

    index: int
    flip: bool  # the pair was given as (y, x)
    conversation: str
    x: str
    y: str
    principles: list[Principle]
    suspect: bool
    truncated: bool = False
    header: list[int] = field(default_factory=list)
    prefix: list[int] = field(default_factory=list)
    suffixes: list[list[int]] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.header) + len(self.prefix) + max(map(len, self.suffixes))

    def rows(self) -> list[list[int]]:
        return [self.header + self.prefix + suffix for suffix in self.suffixes]


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
        self.label_ids = label_token_ids(self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.share_prefix = share_prefix
        self._instructions = None  # (rows, KV cache, mask, seen) of the instructions, within one `label` call
        # a chat template writes any BOS itself; a plain prompt gets the tokenizer's BOS, if it has one
        plain = not getattr(self.tokenizer, "chat_template", None)
        self.bos = [self.tokenizer.bos_token_id] if plain and self.tokenizer.bos_token_id is not None else []
        self._keep_one = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        # comparisons, identical, truncated, forward_passes, tokens (forwarded, pads too), generated_tokens
        self.stats: Counter = Counter()
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
        self._instructions = None  # shared by this call's batches only: the judge may change between calls
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
            jobs.append(_Job(i, flip, conversation, rx, ry, principles, suspect_injection(ta + "\n" + tb)))
        for job in jobs:
            self._encode(job)
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
        chunks = _chunks(jobs, self.batch_size, self.share_prefix and not self.cot)
        for chunk in tqdm(chunks, desc="RLAIF labels", disable=not progress or len(chunks) < 2):
            reasoning = None
            if self.cot:
                rows = [row for job in chunk for row in job.rows()]
                reasoning = self._reason(rows)
                rows = [row + self._encode_text(f"{r}\n\n{ANSWER_PREFIX}") for row, r in zip(rows, reasoning)]
                log_odds = self._log_odds(rows)
            else:
                log_odds = self._log_odds_chunk(chunk)
            start = 0
            for job in chunk:
                n = len(job.suffixes)
                thoughts = reasoning[start : start + n] if reasoning else None
                labels[job.index] = self._verdict(job, log_odds[start : start + n].tolist(), thoughts)
                start += n
        return labels

    def _key(self, prompt: Any) -> str:
        """The principle-sampling seed of a comparison: the labeler's seed and the prompt. Every comparison of a
        prompt is judged by the same principles, and no response can steer which."""
        content = json.dumps([self.seed, prompt], sort_keys=True, default=str)
        return hashlib.sha256(content.encode()).hexdigest()

    def _texts(self, job: _Job) -> list[str]:
        orders = [(job.x, job.y), (job.y, job.x)] if self.swap else [(job.x, job.y)]
        return [
            judge_prompt(self.tokenizer, job.conversation, first, second, principle.text, self.cot)
            for principle in job.principles
            for first, second in orders
        ]

    def _encode_text(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _segments(self, job: _Job) -> None:
        """Tokenize a job's instructions, conversation and suffixes, each piece on its own (so rows share ids)."""
        suffixes = []
        for text in self._texts(job):
            header, prefix, suffix = split_shared(text, with_principle=self.k == 1)
            suffixes.append(suffix)
        job.header = self.bos + self._encode_text(header)
        job.prefix = self._encode_text(prefix)
        job.suffixes = self.tokenizer(suffixes, add_special_tokens=False)["input_ids"]

    def _encode(self, job: _Job) -> None:
        """Tokenize a job; an over-long one is cut from the start of the conversation, then (if that is not
        enough) each response keeps its beginning. Every row of a job is cut the same way."""
        self._segments(job)
        longest = job.length
        if longest <= self.max_length:
            return
        job.truncated = True
        over = longest - self.max_length + SLACK  # tokens to remove
        conversation, marker = self._encode_text(job.conversation), len(self._encode_text(f" {TRUNCATED}"))
        if len(conversation) > over + marker + SLACK:
            job.conversation = f"{TRUNCATED} {self._decode(conversation[over + marker :])}"
        else:  # the whole conversation is not enough: drop it, then keep the beginning of each response
            job.conversation = TRUNCATED
            over -= len(conversation) - marker
            x, y = self._encode_text(job.x), self._encode_text(job.y)
            budget = len(x) + len(y) - over - 2 * marker
            if budget < 2:
                raise ValueError(f"max_length={self.max_length} is too short for the judge's prompt ({longest} tokens)")
            cap = max(budget // 2, budget - min(len(x), len(y)))
            job.x, job.y = (
                self._decode(t[:cap]) + f" {TRUNCATED}" if len(t) > cap else self._decode(t) for t in (x, y)
            )
        self._segments(job)
        if job.length > self.max_length:  # a last guard; the cuts above leave SLACK tokens free
            job.prefix = job.prefix[job.length - self.max_length :]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _batch(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded ids, attention mask and position ids (counted from each row's first real token)."""
        ids = pad([torch.tensor(r) for r in rows], self.pad_id, "left")
        mask = pad([torch.ones(len(r), dtype=torch.long) for r in rows], 0, "left")
        device = self.model.device
        return ids.to(device), mask.to(device), (mask.cumsum(-1) - 1).clamp(min=0).to(device)

    def _label_log_odds(self, logits: torch.Tensor) -> torch.Tensor:
        """log P(label A) - log P(label B) from last-position logits (rows, vocab), each label's probability summed
        over its token variants. Shape: (rows,), float64."""
        self.stats["forward_passes"] += 1
        logps = logits.double().log_softmax(-1)
        label_a, label_b = (logps[:, variants].logsumexp(-1) for variants in self.label_ids)
        return (label_a - label_b).cpu()

    @torch.no_grad()
    def _log_odds(self, rows: list[list[int]]) -> torch.Tensor:
        """Label log-odds at the last position of whole rows. Shape: (rows,)."""
        self.model.eval()
        ids, mask, positions = self._batch(rows)
        self.stats["tokens"] += ids.numel()
        kwargs = {"logits_to_keep": 1} if self._keep_one else {}
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs).logits[:, -1]
        return self._label_log_odds(logits)

    @torch.no_grad()
    def _log_odds_chunk(self, chunk: list[_Job]) -> torch.Tensor:
        """Label log-odds of every row of a chunk of jobs. Shared parts are computed once where the model allows:
        the instructions (once per `label` call), then each job's conversation, then each row's suffix.
        Shape: (rows,)."""
        if self.share_prefix:
            headers = [job.header for job in chunk]
            levels = [[headers[0]]] if headers.count(headers[0]) == len(headers) else [headers]
            levels += [[job.prefix for job in chunk], [suffix for job in chunk for suffix in job.suffixes]]
            try:
                return self._log_odds_levels(levels)
            except (AttributeError, TypeError, NotImplementedError) as err:
                logger.info("The judge's KV cache cannot be shared (%s): judging whole rows", err)
                self.share_prefix = False
        return self._log_odds([row for job in chunk for row in job.rows()])

    def _log_odds_levels(self, levels: list[list[list[int]]]) -> torch.Tensor:
        """Rows built level by level: each row of a level continues row i // r of the previous level (r = the ratio of
        their sizes), whose KV cache is repeated r times. Each level is left padded, so pads sit between levels,
        masked, and positions count real tokens only. The label log-odds at the last level's last position."""
        self.model.eval()
        kwargs = {"logits_to_keep": 1} if self._keep_one else {}
        cache, mask, seen = None, None, None
        for depth, rows in enumerate(levels):
            if depth == 0 and self._instructions is not None and self._instructions[0] == rows:
                cache, mask, seen = copy.deepcopy(self._instructions[1]), *self._instructions[2:]
                continue
            ids, level_mask, positions = self._batch(rows)
            self.stats["tokens"] += ids.numel()
            if cache is not None:
                repeats = len(rows) // mask.shape[0]
                cache.batch_repeat_interleave(repeats)
                mask, seen = mask.repeat_interleave(repeats, 0), seen.repeat_interleave(repeats, 0)
                positions = (seen[:, None] + level_mask.cumsum(-1) - 1).clamp(min=0)
            mask = level_mask if mask is None else torch.cat([mask, level_mask], -1)
            last = depth == len(levels) - 1
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=not last,
                **kwargs,
            )
            cache, seen = out.past_key_values, level_mask.sum(-1) + (0 if seen is None else seen)
            if depth == 0 and len(rows) == 1 and not last:  # the instructions: kept for this call's other batches
                self._instructions = (rows, copy.deepcopy(cache), mask, seen)
        return self._label_log_odds(out.logits[:, -1])

    @torch.no_grad()
    def _reason(self, rows: list[list[int]]) -> list[str]:
        """Chain of thought: greedy reasoning for each row, cut before any answer it writes itself."""
        self.model.eval()
        ids, mask, _ = self._batch(rows)
        out = self.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=self.cot_max_new_tokens,
            do_sample=False,
            pad_token_id=self.pad_id,
            stop_strings=_ANSWER_STARTS,  # the reasoning is cut there anyway: no need to write on
            tokenizer=self.tokenizer,
        )
        self.stats["tokens"] += ids.numel()
        self.stats["generated_tokens"] += out[:, ids.shape[1] :].numel()
        texts = self.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
        return [_ANSWER_IN_REASONING.split(t, maxsplit=1)[0].strip() for t in texts]

    def _verdict(self, job: _Job, log_odds: list[float], reasoning: list[str] | None) -> PairLabel:
        """Combine a job's rows (principle-major, order-minor) into the log-odds that x is better, then map the
        verdict back to (a, b)."""
        step = 2 if self.swap else 1
        first = statistics.fmean(log_odds[0::step])  # x shown as (A)
        second = -statistics.fmean(log_odds[1::2]) if self.swap else None  # x shown as (B): label B is x
        s = (first + second) / 2 if self.swap else first
        p = _sigmoid(s)
        label = PairLabel(
            p=p,
            log_odds=s,
            p_orders=(_sigmoid(first), _sigmoid(second) if self.swap else None),
            principles=[principle.id for principle in job.principles],
            uncertain=abs(p - 0.5) < self.tie_threshold,
            truncated=job.truncated,
            suspect_injection=job.suspect,
            reasoning=reasoning,
        )
        return label.swapped() if job.flip else label

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
        wins = [0.0] * len(completions)
        for (i, j), label in zip(pairs, labels):
            wins[i] += label.p
            wins[j] += 1 - label.p
        sizes = {i: len(group) for group in groups for i in group}
        return [wins[i] / (sizes[i] - 1) if sizes[i] > 1 else 0.5 for i in range(len(completions))]


def _tokens(chunk: list[_Job], shared: bool) -> tuple[int, int]:
    """(real tokens, tokens forwarded with pads) of a chunk: level by level when the shared parts are computed once
    (the instructions once, a row per job, a row per suffix), else whole rows padded to the longest."""
    if not shared:
        rows = [len(job.header) + len(job.prefix) + len(suffix) for job in chunk for suffix in job.suffixes]
        return sum(rows), len(rows) * max(rows)
    prefixes = [len(job.prefix) for job in chunk]
    suffixes = [len(suffix) for job in chunk for suffix in job.suffixes]
    if len({tuple(job.header) for job in chunk}) == 1:
        headers = [len(chunk[0].header)]
    else:
        headers = [len(job.header) for job in chunk]
    real = sum(headers) + sum(prefixes) + sum(suffixes)
    return real, sum(len(level) * max(level) for level in (headers, prefixes, suffixes))


def _chunks(jobs: list[_Job], batch_size: int, shared: bool, max_padding: float = 0.1) -> list[list[_Job]]:
    """Batches of at most `batch_size` jobs whose pads are at most `max_padding` of their real tokens (on a CPU a
    pad costs as much as a real token): jobs by the length of their suffixes (the level with the most rows), each
    put into the first batch it fits without breaking that budget, else into a new one."""
    chunks: list[list[_Job]] = []
    for job in sorted(jobs, key=lambda job: (max(map(len, job.suffixes)), len(job.prefix))):
        for chunk in chunks:
            if len(chunk) < batch_size:
                real, forwarded = _tokens([*chunk, job], shared)
                if forwarded <= (1 + max_padding) * real:
                    chunk.append(job)
                    break
        else:
            chunks.append([job])
    return chunks


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))
