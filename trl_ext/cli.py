"""What the recipes' entry points share: errors a user can act on reported as one clear message instead of a
traceback, and the run folder Hydra chose."""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from trl_ext.distributed import rank_label
from trl_ext.exceptions import USER_ERRORS

logger = logging.getLogger(__name__)

STORAGE_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exhausted"}
STORAGE_ERRNOS |= {errno.EACCES: "permission denied", errno.EPERM: "permission denied", errno.EROFS: "read-only"}


def storage_problem(err: OSError) -> str | None:
    """A full disk or a permission problem as one line naming the path; None for any other OSError."""
    if err.errno not in STORAGE_ERRNOS:
        return None
    path = err.filename or "a file"
    return (
        f"cannot write {path}: {STORAGE_ERRNOS[err.errno]} ({err.strerror}). Stages publish atomically, so finished "
        "outputs are intact; free space or fix the permissions (or choose hydra.run.dir=...) and rerun to resume."
    )


def report_user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a recipe's `main`: bad data, a stage made by another config, etc. exit with status 2 and the
    message alone (set TRL_EXT_TRACEBACK=1 to see the traceback). Under a multi-process launch the message names
    the rank, and any other exception's full traceback is recorded for the launcher's failure summary (torchrun's
    `record`), whichever rank raised it."""
    from torch.distributed.elastic.multiprocessing.errors import record

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (*USER_ERRORS, OSError) as err:
            message = storage_problem(err) if isinstance(err, OSError) else str(err)
            if os.environ.get("TRL_EXT_TRACEBACK") or message is None:
                raise
            where = rank_label()
            print(f"error{f' ({where})' if where else ''}: {message}", file=sys.stderr)
            sys.exit(2)

    return record(wrapper)


def run_dir() -> str:
    """The run folder Hydra decided for this job (conf/base.yaml: from the config, the same on every rank)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir
