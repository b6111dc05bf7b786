"""Where trl_ext caches what it builds once (the de-quantised embedded model, the tiny test model)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of trl_ext's model cache: `$TRL_EXT_CACHE`, else `~/.cache/trl_ext`."""
    return Path(os.environ.get("TRL_EXT_CACHE", Path.home() / ".cache" / "trl_ext")).expanduser()
