"""Several processes, one run: who the main process is, what only it writes, and what every rank must share.

Under `accelerate launch` (DDP, DeepSpeed, FSDP) every process runs the whole recipe, Hydra app included. The run
folder is decided from the config (conf/base.yaml), so the ranks agree on it; this module makes the rest safe:
`MainProcessOnly` (a Hydra callback, enabled in conf/base.yaml) lets only the main process write `.hydra/` and the
run log and quiets the other ranks; `process_state` reports the ranks correctly on CPU too (DeepSpeed's CPU launch
included); `share_across_processes` puts in-memory datasets where every rank finds the caches built from them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

# Where launchers put the global rank: torchrun/accelerate/deepspeed, then MPI (accelerate's multi-CPU launch).
RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _env_int(names: tuple[str, ...], default: int) -> int:
    return next((int(os.environ[n]) for n in names if os.environ.get(n, "").isdigit()), default)


def env_rank() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment: valid before any process group exists. (0, 1) alone."""
    return _env_int(RANK_VARS, 0), _env_int(SIZE_VARS, 1)


def rank_label() -> str:
    """'rank 1/2' under a multi-process launch, '' alone: for messages every rank prints."""
    rank, world = env_rank()
    return f"rank {rank}/{world}" if world > 1 else ""


def process_state():
    """accelerate's `PartialState`, initialised as the TRL trainers will see it.

    On a machine without CUDA it is created with `cpu=True`: a plain `PartialState()` under a DeepSpeed launch on CPU
    initialises the process group but reports one process, so every rank would believe it is the main one.
    """
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def share_across_processes(data, folder: str | Path):
    """Under several processes, back in-memory datasets (a `Dataset` or `DatasetDict`) by Arrow files in `folder`
    (inside the run folder, which every rank sees); one process alone keeps them in memory.

    `datasets` caches a derived dataset beside its source's files, else in a temporary folder private to each process;
    TRL's DPOTrainer writes its precomputed reference log-probs from the main process only, so the other ranks must be
    able to find that cache.
    """
    from datasets import load_from_disk

    state = process_state()
    if state.num_processes == 1:
        return data
    if state.is_main_process:
        data.save_to_disk(str(folder))
    state.wait_for_everyone()
    return load_from_disk(str(folder))


@contextlib.contextmanager
def full_weights() -> Iterator[None]:
    """Load models whole inside this block, even after a ZeRO-3 trainer enabled `deepspeed.zero.Init` for the process.

    For models used outside a DeepSpeed engine (best-of-N sampling, evaluation on the main process): a model loaded
    partitioned could only run with every rank joining each forward pass.
    """
    from trl_ext._compat.hooks import zero3_init_suspended

    with zero3_init_suspended():
        yield


class MainProcessOnly(Callback):
    """Hydra callback: `.hydra/` (config, hydra config, overrides) and the run log come from the main process only;
    the other ranks log warnings and errors to the console, without progress bars.

    conf/base.yaml sets `hydra.output_subdir: null` so that Hydra itself writes nothing per rank, and enables this
    callback, which writes the same three files Hydra would (once per job, sweeps included).
    """

    def __init__(self, output_subdir: str = ".hydra"):
        self.output_subdir = output_subdir

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if env_rank()[0] == 0:
            self._save_hydra_files(config)
        else:
            self._quiet()

    def _save_hydra_files(self, config: DictConfig) -> None:
        folder = Path(config.hydra.runtime.output_dir) / self.output_subdir
        folder.mkdir(parents=True, exist_ok=True)
        task = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
        files = {
            "config.yaml": task,
            "hydra.yaml": OmegaConf.create({"hydra": config.hydra}),
            "overrides.yaml": config.hydra.overrides.task,
        }
        for name, node in files.items():
            (folder / name).write_text(OmegaConf.to_yaml(node), encoding="utf-8")

    @staticmethod
    def _quiet() -> None:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            root.removeHandler(handler)  # the main process writes the run log
            handler.close()
        root.setLevel(logging.WARNING)
        warnings.simplefilter("ignore")  # libraries' deprecation notices: the main process shows them once
        os.environ["TQDM_DISABLE"] = "1"  # read at call time by TRL's loops
        with contextlib.suppress(ImportError):
            import datasets

            datasets.disable_progress_bars()


@contextlib.contextmanager
def gathered_parameters(model, accelerator) -> Iterator[None]:
    """Under DeepSpeed ZeRO-3, gather `model`'s whole parameters for the block (every rank must enter: collective),
    e.g. so that the main process can merge adapters and save; elsewhere the parameters are whole already."""
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None or plugin.zero_stage != 3:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters())):
        yield
