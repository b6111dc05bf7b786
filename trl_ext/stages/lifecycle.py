"""The life of any stage, training or not: skip it when its output is complete, else do its work and publish the
output folder atomically; and what a stage hands the next one (`StageOutput`)."""

from __future__ import annotations

import json
import resource
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from trl_ext.stages.folder import Stage

POLICY, REWARD_MODEL, PAIRS = "policy", "reward_model", "pairs"  # what a stage makes
Writer = Callable[[Path], None]


def peak_rss_gib() -> float:
    """This process's peak resident memory so far, in GiB (Linux reports KiB): the stage's own when it runs alone."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)


@dataclass(frozen=True)
class StageOutput:
    """A finished stage: its name in the run, its folder, and what it made (a policy, a reward model, or preference
    pairs in `pairs_file`)."""

    name: str
    path: Path
    makes: str

    @property
    def pairs_file(self) -> Path:
        """The preference pairs of a pair stage (`pairs.jsonl` or `pairs.parquet`)."""
        found = sorted(self.path.glob("pairs.*"))
        if self.makes != PAIRS or not found:
            raise ValueError(f"{self.path}: stage {self.name} made no preference pairs")
        return found[0]


def run_stage(
    cfg: DictConfig, run_dir: str | Path, name: str, makes: str, work: Callable[[Stage], tuple[dict[str, Any], Writer]]
) -> StageOutput:
    """Skip the stage if its output is complete; else `work(stage)` -> (metrics, write) and publish: `write(folder)`
    runs on every process (collective saves), and the folder is renamed into place when it returns."""
    stage = Stage(run_dir, name, cfg, force=cfg.get("force", False))
    if not stage.is_complete:
        stage.prepare()
        metrics, write = work(stage)
        with stage.publish(metrics) as out:
            write(out)
    return StageOutput(name, stage.output, makes)


def write_json(folder: Path, files: dict[str, Any]) -> None:
    """Each `name: content` as a JSON file in `folder`."""
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content, indent=2, default=str))
