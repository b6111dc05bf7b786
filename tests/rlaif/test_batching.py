"""Comparisons grouped into forward passes within the padding budget, tokens counted level by level."""

from trl_ext.rlaif.batching import chunks, forwarded_tokens
from trl_ext.rlaif.comparisons import Comparison


def test_batches_keep_within_the_padding_budget():
    def job(index, prefix, suffix):
        return Comparison(
            index, False, "", "", "", [], False, header=[1] * 50, prefix=[2] * prefix, suffixes=[[3] * suffix] * 2
        )

    same = [job(i, 40, 100) for i in range(4)]
    assert [len(c) for c in chunks(same, 8, shared=True)] == [4]
    assert [len(c) for c in chunks(same, 3, shared=True)] == [3, 1]
    mixed = [*same, job(4, 40, 300), job(5, 400, 100), job(6, 45, 104)]
    batches = chunks(mixed, 8, shared=True)
    assert sorted(map(len, batches)) == [1, 1, 5]  # the long suffix and the long conversation go alone
    for shared in (True, False):
        for chunk in chunks(mixed, 8, shared):
            real, forwarded = forwarded_tokens(chunk, shared)
            assert forwarded <= 1.1 * real
    assert sorted(j.index for c in batches for j in c) == list(range(7))
    real, forwarded = forwarded_tokens(same[:2], shared=True)
    assert (real, forwarded) == (50 + 2 * 40 + 4 * 100, 50 + 2 * 40 + 4 * 100)
    assert forwarded_tokens([same[0], mixed[4]], shared=False) == (2 * 190 + 2 * 390, 4 * 390)
