"""``robolearn``: the whole imitation pipeline on the embedded default, one command.

    robolearn                                   # lift: demos -> EDM policy -> 100 eval episodes
    robolearn policy=bc train.steps=2000        # the same with another policy
    robolearn task=push                         # another task (collects its demos first)

1. collect scripted-expert demos into ``dataset`` (``datasets/<task>_expert.hdf5``) if that file
   does not exist yet;
2. train the policy (``conf/train.yaml`` settings, all overridable as in ``robolearn-train``);
3. evaluate the trained checkpoint in batched simulated worlds, with a video when a renderer is
   available (with ``train.eval_every`` > 0, the best checkpoint of the in-training evaluations);
4. print a summary table and where the checkpoint, video and ``eval_info.json`` are.

Exit status: 0 done, 1 the expert could not produce enough demos, 2 bad input, 130 interrupted
(training saves a checkpoint first and says how to resume it with ``robolearn-train``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from robolearn.assets import conf_dir
from robolearn.cli.common import (
    BAD_INPUT,
    EXIT_INTERRUPTED,
    demo_task_config,
    fail,
    run_hydra_main,
)
from robolearn.cli.eval import EvalReport, EvalSettings, run_evaluation
from robolearn.cli.train import TrainJob, prepare
from robolearn.data.collect import collect
from robolearn.policies.trainer import TrainConfig, TrainResult
from robolearn.utils.config import from_dict

PROG = "robolearn"
#: Sections of ``conf/main.yaml`` beyond those of ``conf/train.yaml``.
PIPELINE_KEYS = ("collect", "eval")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectSettings:
    """``collect:`` in ``conf/main.yaml``."""

    num_episodes: int = 100
    num_envs: int = 50
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        if self.num_episodes <= 0 or self.num_envs <= 0:
            raise ValueError("collect.num_episodes and collect.num_envs must be positive")


@hydra.main(config_path=str(conf_dir()), config_name="main", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    start = time.perf_counter()
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    try:
        collect_settings = from_dict(CollectSettings, data.pop("collect"), path="collect.")
        eval_settings = from_dict(EvalSettings, data.pop("eval"), path="eval.")
    except BAD_INPUT as e:
        fail(PROG, e)
    train_overrides = training_overrides(hydra_cfg.overrides.task)

    dataset = Path(to_absolute_path(str(data["dataset"])))
    if not dataset.exists():
        _collect(data["task"], dataset, collect_settings, hydra_cfg.overrides.task)
    try:
        job = prepare(data, run_dir, train_overrides)
    except BAD_INPUT as e:
        fail(PROG, e)
    with job:
        trained = job.run(PROG)
        # The best checkpoint of the in-training evaluations (train.eval_every > 0), scored on
        # other episodes (seeds) than this final evaluation, so its figure is not selected on.
        checkpoint = trained.best.path if trained.best is not None else trained.checkpoint
        report = run_evaluation(eval_settings, checkpoint, run_dir, PROG)
        job.logger.log({f"eval/{k}": v for k, v in _eval_scalars(report).items()}, trained.step)
    print(_summary(job, trained, report, eval_settings.video, time.perf_counter() - start))


def training_overrides(overrides: list[str]) -> list[str]:
    """The command line's overrides that concern training: not those of the pipeline's
    ``collect`` and ``eval`` steps, with or without Hydra's ``+``/``++``/``~`` prefix."""
    return [o for o in overrides if o.lstrip("+~").split(".")[0] not in PIPELINE_KEYS]


def _collect(
    task_cfg: dict[str, Any], path: Path, settings: CollectSettings, cli_overrides: list[str]
) -> None:
    """Scripted-expert demos into ``path``; exit 1 if the expert fails too often, 130 on Ctrl-C.

    The demos take the name ``path`` only once all of them are in: a short or interrupted
    collection is kept beside it (``<stem>.partial<suffix>``), so that the next run collects
    again instead of training on it."""
    task_cfg = dict(task_cfg)
    task = task_cfg.pop("name")
    log.info("no dataset at %s: collecting %d %s demos", path, settings.num_episodes, task)
    partial = path.with_name(f"{path.stem}.partial{path.suffix}")
    try:
        task_cfg = demo_task_config(task, task_cfg, cli_overrides)
        result = collect(
            task,
            settings.num_episodes,
            partial,
            num_envs=settings.num_envs,
            seed=settings.seed,
            task_overrides=task_cfg,
            overwrite=True,
            progress=settings.progress,
        )
    except BAD_INPUT as e:
        fail(PROG, e)
    if not result.interrupted and result.written == settings.num_episodes:
        os.replace(partial, path)
        return
    kept = (
        f"kept {result.written} demos in {partial} (dataset={partial} trains on them)"
        if result.path is not None
        else "no demo was written"
    )
    if result.interrupted:
        print(f"{PROG}: interrupted while collecting; {kept}", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED)
    print(
        f"{PROG}: the {task} expert produced only {result.written} of "
        f"{settings.num_episodes} demos; {kept}",
        file=sys.stderr,
    )
    raise SystemExit(1)


def _eval_scalars(report: EvalReport) -> dict[str, float]:
    result = report.result
    return {
        "success_rate": result.success_rate,
        "mean_return": result.mean_return,
        "mean_length": result.mean_length,
    }


def _summary(
    job: TrainJob, trained: TrainResult, report: EvalReport, video: bool, seconds: float
) -> str:
    """The table and paths the main job ends with."""
    result = report.result
    low, high = result.ci95
    header = ("task", "policy", "demos", "train time", "success (95% CI)", "episodes", "length")
    row = (
        result.task,
        job.trainer.policy.name,
        str(job.num_demos),
        f"{trained.seconds:.0f} s ({trained.step} steps)",
        f"{result.success_rate:.1%} ({low:.1%}-{high:.1%})",
        str(result.n_episodes),
        f"{result.mean_length:.1f}",
    )
    widths = [max(len(a), len(b)) for a, b in zip(header, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        for cells in (header, row)
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines += [
        "",
        f"checkpoint  {report.checkpoint}{_selection(trained, job.trainer.cfg)}",
        f"video       {report.video or ('none: no renderer' if video else 'off')}",
        f"eval_info   {report.eval_info}",
        f"total time  {seconds:.0f} s",
    ]
    return "\n".join(lines)


def _selection(trained: TrainResult, cfg: TrainConfig) -> str:
    """How the evaluated checkpoint was chosen, when it was not simply the last one."""
    best = trained.best
    if best is None:
        return ""
    return (
        f"  (best of the evaluations every {cfg.eval_every} steps: {best.success_rate:.1%} "
        f"over {cfg.eval_episodes} episodes at step {best.step})"
    )


def main() -> None:
    run_hydra_main(PROG, _main)


if __name__ == "__main__":
    main()
