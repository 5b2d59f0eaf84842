"""Scalar loggers for training runs: TensorBoard by default, Weights & Biases optional.

A logger does two things, ``log(scalars, step)`` and ``close()``, so that a trainer never knows
which backend it writes to. wandb is an optional extra, imported only when chosen: the default
install neither needs it nor pays for its import. Its ``mode: offline`` writes the run under the
run dir for a later ``wandb sync`` and needs neither network nor account.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

BACKENDS = ("tensorboard", "wandb", "none")
WANDB_MODES = ("online", "offline", "disabled")


@dataclass(frozen=True)
class LoggerConfig:
    """``conf/logger/*.yaml``; the wandb keys are ignored by the other backends."""

    backend: str = "tensorboard"
    project: str = "robolearn"
    entity: str | None = None
    mode: str = "online"
    group: str | None = None
    tags: tuple[str, ...] = ()

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown logger backend {self.backend!r}; choose from {BACKENDS}")
        if self.mode not in WANDB_MODES:
            raise ValueError(f"unknown wandb mode {self.mode!r}; choose from {WANDB_MODES}")
        for key in ("entity", "group"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"config key 'logger.{key}' must be a string, got {value!r}")


class ScalarLogger(Protocol):
    def log(self, scalars: Mapping[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class NullLogger:
    def log(self, scalars: Mapping[str, float], step: int) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardLogger:
    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when used

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    def __init__(self, cfg: LoggerConfig, run_dir: Path, name: str, config: Mapping[str, Any]):
        try:
            wandb = importlib.import_module("wandb")
        except ImportError:
            raise ValueError(
                'logger=wandb needs the wandb package: pip install "robolearn[wandb]" '
                "(or use logger=tensorboard)"
            ) from None
        self.run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            group=cfg.group,
            tags=list(cfg.tags),
            mode=cfg.mode,
            name=name,
            dir=str(run_dir),
            config=dict(config),
        )

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        self.run.log(dict(scalars), step=step)

    def close(self) -> None:
        self.run.finish()


def make_logger(
    cfg: LoggerConfig, run_dir: Path, name: str, config: Mapping[str, Any]
) -> ScalarLogger:
    """The logger ``cfg`` names, writing under ``run_dir``; ``config`` is recorded by wandb."""
    if cfg.backend == "tensorboard":
        return TensorBoardLogger(run_dir / "tensorboard")
    if cfg.backend == "wandb":
        return WandbLogger(cfg, run_dir, name, config)
    return NullLogger()
