"""Comparisons grouped into forward passes: at most `batch_size` each, and little padding (on a CPU a pad costs as
much as a real token), counting tokens level by level when the shared prefixes are computed once."""

from __future__ import annotations

from trl_ext.rlaif.comparisons import Comparison


def forwarded_tokens(chunk: list[Comparison], shared: bool) -> tuple[int, int]:
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


def chunks(jobs: list[Comparison], batch_size: int, shared: bool, max_padding: float = 0.1) -> list[list[Comparison]]:
    """Batches of at most `batch_size` jobs whose pads are at most `max_padding` of their real tokens: jobs by the
    length of their suffixes (the level with the most rows), each put into the first batch it fits without breaking
    that budget, else into a new one."""
    out: list[list[Comparison]] = []
    for job in sorted(jobs, key=lambda job: (max(map(len, job.suffixes)), len(job.prefix))):
        for chunk in out:
            if len(chunk) < batch_size:
                real, forwarded = forwarded_tokens([*chunk, job], shared)
                if forwarded <= (1 + max_padding) * real:
                    chunk.append(job)
                    break
        else:
            out.append([job])
    return out
