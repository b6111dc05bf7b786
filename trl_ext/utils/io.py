"""Atomic output folders: written under a temporary name, renamed into place only when complete."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_dir(final: str | Path, replace: bool = False, staging: str | Path | None = None) -> Iterator[Path]:
    """Yield a temporary sibling of `final` to write into; rename it to `final` when the block succeeds.

    A crash or an exception leaves no folder at `final` (the temporary one is removed), so a later stage never
    picks up a half-written output. If another process published `final` first, theirs is kept unless `replace`.
    `staging`: a fixed temporary path instead of a fresh random one (a path every process of a run can compute,
    for saves that all ranks write into together); whatever is there is cleared first.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        if staging is None:
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        else:
            tmp = Path(staging)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
    except OSError as err:
        raise OSError(f"Cannot create an output folder next to {final}: {err}") from err
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if replace and final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(tmp, final)
    except OSError:  # `final` appeared meanwhile (a concurrent writer): keep the published one
        shutil.rmtree(tmp, ignore_errors=True)
        if not final.exists():
            raise
