"""A pipeline stage's output folder: skipped when complete, resumable when interrupted, published atomically.

Layout inside a run folder, for a stage named `dpo`:
    dpo/           the finished output (HF model + tokenizer, config.yaml, metrics, stage.json): exists only when done
    dpo.work/      trainer checkpoints, kept so a rerun resumes where it stopped
    .dpo.partial/  the output while it is being written; renamed to dpo/ as the very last step
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trl_ext.distributed import process_state
from trl_ext.exceptions import StageConfigMismatch
from trl_ext.utils.io import atomic_dir

logger = logging.getLogger(__name__)
MANIFEST = "stage.json"
TRAINER_STATE_NAME = "trainer_state.json"  # what transformers' Trainer writes last in a checkpoint


def config_hash(cfg: DictConfig | dict) -> str:
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    return hashlib.sha256(json.dumps(container, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    return {k: v for key, value in d.items() for k, v in _flat(value, f"{prefix}{key}.").items()} or {prefix: d}


def config_diff(old: dict, new: dict, limit: int = 8) -> str:
    a, b = _flat(old), _flat(new)
    changed = [
        f"{k.rstrip('.')}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
    ]
    return "; ".join(changed[:limit]) + (f"; ... ({len(changed) - limit} more)" if len(changed) > limit else "")


class Stage:
    """One stage of a run: decides skip / resume / fresh, and publishes its output folder atomically.

    `cfg` is the stage's identity: a complete output made from another config is an error, not silently reused.
    """

    def __init__(self, run_dir: str | Path, name: str, cfg: DictConfig, force: bool = False):
        self.name = name
        self.run_dir = Path(run_dir)
        self.output = self.run_dir / name
        self.work = self.run_dir / f"{name}.work"
        self.partial = self.run_dir / f".{name}.partial"
        # `force` says what to do, not what to make: it is not part of the stage's identity
        self.cfg = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "force"}
        self.force = force
        self.state = process_state()

    @property
    def is_complete(self) -> bool:
        """True if a finished output with the same config exists (raise if its config differs, unless forced)."""
        manifest = self.output / MANIFEST
        if not manifest.exists() or self.force:
            return False
        done = json.loads(manifest.read_text())
        if done["config_hash"] != config_hash(self.cfg):
            raise StageConfigMismatch(
                f"{self.output} is complete but was made with another config ({config_diff(done['config'], self.cfg)})."
                " Rerun with +force=true to replace it, or choose another hydra.run.dir."
            )
        logger.info("Stage %s already complete in %s: skipped (+force=true reruns it)", self.name, self.output)
        return True

    def prepare(self) -> None:
        """Clear what a forced rerun must not reuse; keep checkpoints so an interrupted run resumes."""
        if self.state.is_main_process and self.force:
            shutil.rmtree(self.work, ignore_errors=True)
        self.state.wait_for_everyone()

    def last_checkpoint(self, marker: str = TRAINER_STATE_NAME) -> str | None:
        """The newest complete `checkpoint-N` in the work folder, for `trainer.train(resume_from_checkpoint=...)`.

        Complete = holding `marker`, the file its trainer writes last (transformers' Trainer and our PPOTrainer:
        trainer_state.json), so a checkpoint cut short by a crash is passed over for the one before it.
        """
        if not self.work.is_dir():
            return None
        folders = list(self.work.glob("checkpoint-*"))
        complete = [c for c in folders if (c / marker).exists()]
        if len(complete) < len(folders):
            logger.warning("Passing over incomplete checkpoint(s) in %s (a crash during a save)", self.work)
        return str(max(complete, key=lambda c: int(c.name.split("-")[-1]))) if complete else None

    @contextmanager
    def publish(self, metrics: dict[str, Any] | None = None) -> Iterator[Path]:
        """Yield the partial folder (the same path on every rank, so collective saves work); when the block is done,
        write the manifest and rename the folder to the output (`atomic_dir`, on the main process)."""
        main = self.state.is_main_process
        folder = atomic_dir(self.output, replace=True, staging=self.partial) if main else nullcontext(self.partial)
        with folder as out:
            self.state.wait_for_everyone()
            yield out
            self.state.wait_for_everyone()
            if main:
                OmegaConf.save(OmegaConf.create(self.cfg), out / "config.yaml")
                manifest = {
                    "stage": self.name,
                    "config_hash": config_hash(self.cfg),
                    "config": self.cfg,
                    "completed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "metrics": metrics or {},
                }
                (out / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        self.state.wait_for_everyone()
