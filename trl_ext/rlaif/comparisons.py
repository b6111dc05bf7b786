"""One comparison as the judge reads it: its rows (one per principle and order) tokenized in shared pieces (the
instructions, the conversation, each row's own suffix), cut to the judge's `max_length` when too long."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from trl_ext.rlaif.constitution import Principle
from trl_ext.rlaif.prompts import TRUNCATED, judge_prompt, split_shared

SLACK = 8  # tokens kept free when shortening, for merges at the cut


@dataclass
class Comparison:
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


@dataclass
class ComparisonEncoder:
    """Renders and tokenizes comparisons for one judge: `swap` (both orders), `chain_of_thought` (the prompt asks for
    reasoning first), one shared principle (`principles_per_comparison == 1`) makes it part of the shared prefix."""

    tokenizer: PreTrainedTokenizerBase
    max_length: int
    swap: bool
    chain_of_thought: bool
    principles_per_comparison: int
    bos: list[int]

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def texts(self, job: Comparison) -> list[str]:
        orders = [(job.x, job.y), (job.y, job.x)] if self.swap else [(job.x, job.y)]
        return [
            judge_prompt(self.tokenizer, job.conversation, first, second, principle.text, self.chain_of_thought)
            for principle in job.principles
            for first, second in orders
        ]

    def segments(self, job: Comparison) -> None:
        """Tokenize a job's instructions, conversation and suffixes, each piece on its own (so rows share ids)."""
        suffixes = []
        for text in self.texts(job):
            header, prefix, suffix = split_shared(text, with_principle=self.principles_per_comparison == 1)
            suffixes.append(suffix)
        job.header = self.bos + self.ids(header)
        job.prefix = self.ids(prefix)
        job.suffixes = self.tokenizer(suffixes, add_special_tokens=False)["input_ids"]

    def encode(self, job: Comparison) -> None:
        """Tokenize a job; an over-long one is cut from the start of the conversation, then (if that is not
        enough) each response keeps its beginning. Every row of a job is cut the same way."""
        self.segments(job)
        longest = job.length
        if longest <= self.max_length:
            return
        job.truncated = True
        over = longest - self.max_length + SLACK  # tokens to remove
        conversation, marker = self.ids(job.conversation), len(self.ids(f" {TRUNCATED}"))
        if len(conversation) > over + marker + SLACK:
            job.conversation = f"{TRUNCATED} {self.decode(conversation[over + marker :])}"
        else:  # the whole conversation is not enough: drop it, then keep the beginning of each response
            job.conversation = TRUNCATED
            over -= len(conversation) - marker
            x, y = self.ids(job.x), self.ids(job.y)
            budget = len(x) + len(y) - over - 2 * marker
            if budget < 2:
                raise ValueError(f"max_length={self.max_length} is too short for the judge's prompt ({longest} tokens)")
            cap = max(budget // 2, budget - min(len(x), len(y)))
            job.x, job.y = (self.decode(t[:cap]) + f" {TRUNCATED}" if len(t) > cap else self.decode(t) for t in (x, y))
        self.segments(job)
        if job.length > self.max_length:  # a last guard; the cuts above leave SLACK tokens free
            job.prefix = job.prefix[job.length - self.max_length :]
