"""What the imitation benchmarks (issue 3) share: machine info, demos, configs, training.

``policy_latency.py``, ``train_throughput.py`` and ``policy_success.py`` import this module from
their own directory (Python puts a script's directory on ``sys.path``). Policies are named by
their config-group option in ``conf/policy/`` (``bc``, ``diffusion``, ``diffusion_cpu``, ``edm``,
``edm_cpu``), and
their configs are composed with Hydra exactly as ``robolearn-train policy=<name>`` composes them,
so every benchmark measures the project's defaults unless told otherwise.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from robolearn.assets import conf_dir
from robolearn.cli.train import RunConfig, TrainJob, parse_config, prepare
from robolearn.data.collect import CollectResult, collect

#: Config-group options of ``conf/policy/`` the benchmarks know.
POLICY_CONFIGS = ("bc", "diffusion", "diffusion_cpu", "edm", "edm_cpu")


def logger(prefix: str):
    def log(message: str) -> None:
        print(f"[{prefix}] {message}", file=sys.stderr, flush=True)

    return log


# --- demos ---------------------------------------------------------------------------------------
def collect_demos(
    task: str, num_demos: int, path: Path, *, seed: int = 0, num_envs: int = 50
) -> dict[str, Any]:
    """Scripted-expert demos of ``task`` into ``path`` (reused when it already exists)."""
    if path.exists():
        return {"task": task, "path": str(path), "reused": True}
    start = time.perf_counter()
    result: CollectResult = collect(
        task,
        num_demos,
        path,
        num_envs=min(num_envs, num_demos),
        seed=seed,
        progress=False,
    )
    if result.written < num_demos:
        raise RuntimeError(f"the {task} expert produced only {result.written} of {num_demos} demos")
    return {
        "task": task,
        "path": str(path),
        "reused": False,
        "demos": result.written,
        "expert_success_rate": round(result.success_rate, 4),
        "seed": seed,
        "seconds": round(time.perf_counter() - start, 1),
    }


# --- configs -------------------------------------------------------------------------------------
def compose_train_config(
    policy: str, task: str, dataset: Path | str, overrides: list[str] | tuple[str, ...] = ()
) -> tuple[dict[str, Any], list[str]]:
    """``conf/train.yaml`` composed as ``robolearn-train policy=<policy> task=<task> ...`` would
    compose it (no logging backend, no progress bar), resolved to a plain dict; and the
    overrides used."""
    if policy not in POLICY_CONFIGS:
        raise ValueError(f"unknown policy config {policy!r}; choose from {POLICY_CONFIGS}")
    command_line = [
        f"policy={policy}",
        f"task={task}",
        f"dataset={dataset}",
        "logger=none",
        "train.progress=false",
        *overrides,
    ]
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=command_line)
    config = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(config, dict)
    config.pop("hydra", None)
    return config, command_line


def run_config(
    policy: str, task: str, dataset: Path | str, overrides: list[str] | tuple[str, ...] = ()
) -> RunConfig:
    """The typed, checked run config of :func:`compose_train_config`."""
    config, _ = compose_train_config(policy, task, dataset, overrides)
    return parse_config(config)


def prepare_training(
    policy: str,
    task: str,
    dataset: Path,
    run_dir: Path,
    overrides: list[str] | tuple[str, ...] = (),
) -> TrainJob:
    """A ready :class:`TrainJob` (trainer, checked dataset) as ``robolearn-train`` builds it."""
    config, command_line = compose_train_config(policy, task, dataset, overrides)
    run_dir.mkdir(parents=True, exist_ok=True)
    return prepare(config, run_dir, command_line)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
