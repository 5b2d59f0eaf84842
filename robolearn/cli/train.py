"""``robolearn-train``: a policy from demonstrations.

    robolearn-train policy=bc task=lift dataset=datasets/lift_expert.hdf5 train.steps=2000
    robolearn-train policy=edm logger=wandb logger.mode=offline
    robolearn-train resume=outputs/2025-06-01/12-00-00_edm_lift train.steps=6000
    robolearn-train -m policy=bc,diffusion,edm launcher=joblib

Everything checkable is checked before the first step: config keys and types, the dataset (it
exists, is a valid robomimic-schema file, has demos, and its observations and action match the
task's env), the checkpoint to resume. Bad input gets one line naming the culprit. A resumed run
takes its config from the checkpoint (only ``train.*``, ``logger``, ``device``, ``threads`` and
``name`` may be changed) and continues, in a new run dir, at the checkpoint's step.
Exit status: 0 done, 2 bad input, 130 interrupted (after saving a checkpoint of the completed
steps; the message says how to resume).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from robolearn.assets import conf_dir
from robolearn.checkpoint import (
    check_policy_env_compatible,
    load_config,
    load_policy,
    resolve_checkpoint,
)
from robolearn.cli.common import (
    BAD_INPUT,
    EXIT_INTERRUPTED,
    env_spec,
    fail,
    parse_device,
    plain_config,
    resume_config,
    run_hydra_main,
)
from robolearn.data.hdf5 import validate_dataset
from robolearn.envs.vec_env import VecEnv
from robolearn.policies import Policy, PolicyConfig, policy_class
from robolearn.policies.trainer import TrainConfig, Trainer, TrainResult, load_datasets, make_policy
from robolearn.spec import ObsSpec
from robolearn.utils.config import from_dict
from robolearn.utils.loggers import LoggerConfig, ScalarLogger, make_logger

PROG = "robolearn-train"
#: Top-level keys a resumed run may change; the rest must stay as the checkpoint has them.
RESUMABLE = ("train", "logger", "device", "threads", "name", "resume")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSettings:
    """The top-level scalar keys of ``conf/train.yaml``."""

    dataset: str
    resume: str | None = None
    name: str = ""
    seed: int = 0
    device: str = "cpu"
    threads: int = 0

    def __post_init__(self):
        if self.resume is not None and not isinstance(self.resume, str):
            raise ValueError(f"config key 'resume' must be a path, got {self.resume!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


@dataclass
class TrainJob:
    """A checked, ready-to-run training run; a context manager that closes its logger."""

    trainer: Trainer
    logger: ScalarLogger
    config: dict[str, Any]  # resolved; saved in every checkpoint
    task: str
    task_overrides: dict[str, Any]
    dataset: Path
    num_demos: int  # train + valid
    run_dir: Path

    def __enter__(self) -> TrainJob:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.logger.close()

    def run(self, prog: str = PROG) -> TrainResult:
        """Train; on Ctrl-C report the saved checkpoint and how to resume, and exit 130."""
        try:
            result = self.trainer.fit()
        except KeyboardInterrupt:  # a second Ctrl-C: aborted without saving
            last = self.trainer.checkpoint
            where = f"the last checkpoint is {last[1]}" if last else "no checkpoint was saved"
            print(f"{prog}: aborted; {where}", file=sys.stderr)
            raise SystemExit(EXIT_INTERRUPTED) from None
        if result.interrupted:
            print(
                f"{prog}: interrupted at step {result.step}; saved checkpoint {result.checkpoint}\n"
                f"resume with: robolearn-train resume={self.run_dir}",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_INTERRUPTED)
        log.info(
            "trained %s for %d steps (%d this session) in %.0f s, final loss %.4f; checkpoint %s",
            self.trainer.policy.name,
            result.step,
            result.steps_this_session,
            result.seconds,
            result.loss,
            result.checkpoint,
        )
        best = result.best
        if best is not None:
            log.info(
                "best simulated success %.1f%% at step %d: %s",
                100 * best.success_rate,
                best.step,
                best.path,
            )
        return result


@hydra.main(config_path=str(conf_dir()), config_name="train", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    with prepare_or_fail(cfg, PROG) as job:
        job.run()


def prepare_or_fail(cfg: DictConfig, prog: str) -> TrainJob:
    """:func:`prepare` in the Hydra job's run dir; bad input exits with status 2."""
    hydra_cfg = HydraConfig.get()
    try:
        return prepare(
            plain_config(cfg), Path(hydra_cfg.runtime.output_dir), hydra_cfg.overrides.task
        )
    except BAD_INPUT as e:
        fail(prog, e)


@dataclass(frozen=True)
class RunConfig:
    """A resolved ``conf/train.yaml`` config, typed and checked key by key."""

    settings: RunSettings
    train: TrainConfig
    logger: LoggerConfig
    task: str
    task_overrides: dict[str, Any]
    policy: str
    policy_cfg: PolicyConfig


def parse_config(config: dict[str, Any]) -> RunConfig:
    """Type-check every key (``ValueError`` naming the first bad one); no files are read."""
    task_cfg = dict(config["task"])
    task = task_cfg.pop("name", None)
    if not isinstance(task, str):
        raise ValueError(f"the task config needs a string `name`, got {task!r}")
    policy, policy_cfg = _policy_config(config["policy"])
    sections = {"train", "logger", "task", "policy"}
    scalars = {k: v for k, v in config.items() if k not in sections}
    return RunConfig(
        settings=from_dict(RunSettings, scalars),
        train=from_dict(TrainConfig, config["train"], path="train."),
        logger=from_dict(LoggerConfig, config["logger"], path="logger."),
        task=task,
        task_overrides=task_cfg,
        policy=policy,
        policy_cfg=policy_cfg,
    )


def prepare(config: dict[str, Any], run_dir: Path, command_line: Sequence[str]) -> TrainJob:
    """Check a resolved config of ``conf/train.yaml``'s shape and its inputs, and build the
    trainer; bad input raises ``ValueError``, ``OSError`` or ``KeyError`` naming the culprit.
    ``command_line``: the overrides given, which a resumed run applies to its saved config."""
    config = dict(config)
    checkpoint = None
    if config.get("resume") is not None:
        checkpoint = resolve_checkpoint(to_absolute_path(str(config["resume"])))
        config = resume_config(checkpoint, load_config(checkpoint), config, command_line, RESUMABLE)
    config["dataset"] = to_absolute_path(str(config["dataset"]))
    run = parse_config(config)
    device = parse_device(run.settings.device)
    if run.settings.threads:
        torch.set_num_threads(run.settings.threads)

    dataset = Path(run.settings.dataset)
    spec = env_spec(run.task, run.task_overrides)  # also rejects unknown tasks and keys
    _check_dataset(dataset, run.task, spec)
    if checkpoint is None:
        train_set, valid_set = load_datasets(dataset, run.policy_cfg)
        policy = make_policy(run.policy, run.policy_cfg, train_set, run.settings.seed)
    else:
        policy = load_policy(checkpoint, device, use_ema=False)
        train_set, valid_set = load_datasets(dataset, policy.cfg)
        log.info("resuming %s from %s", policy.name, checkpoint)
    check_policy_env_compatible(policy, spec)  # before training, not at its evaluation

    evaluate = None
    if run.train.eval_every:
        evaluate = _sim_evaluator(run.task, run.task_overrides, run.train, run.settings.seed)
    logger = make_logger(run.logger, run_dir, run_dir.name, config)
    try:
        trainer = Trainer(
            policy,
            train_set,
            valid_set,
            run.train,
            run_dir=run_dir,
            config=config,
            logger=logger,
            seed=run.settings.seed,
            device=device,
            evaluate=evaluate,
        )
        if checkpoint is not None:
            trainer.restore(checkpoint)
    except BaseException:
        logger.close()
        raise
    num_demos = len(train_set.demos) + (len(valid_set.demos) if valid_set is not None else 0)
    log.info(
        "%s on %s: %d demos (%d train samples), %d steps, run dir %s",
        policy.name,
        dataset,
        num_demos,
        len(train_set),
        trainer.total_steps,
        run_dir,
    )
    return TrainJob(
        trainer, logger, config, run.task, run.task_overrides, dataset, num_demos, run_dir
    )


# --- pieces of prepare ---------------------------------------------------------------------------
def _policy_config(data: dict[str, Any]) -> tuple[str, PolicyConfig]:
    data = dict(data)
    name = data.pop("name", None)
    if not isinstance(name, str):
        raise ValueError(f"the policy config needs a string `name`, got {name!r}")
    cls = policy_class(name)
    cfg = from_dict(cls.Config, data, path="policy.")
    cfg.validate()
    return name, cfg


def _check_dataset(path: Path, task: str, env_spec: ObsSpec) -> None:
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset {path} does not exist; make one with "
            f"`robolearn-collect task={task} output={path}` or set dataset=<file>"
        )
    info = validate_dataset(path)  # corrupt files, empty files, schema violations
    if info.spec is None:
        raise ValueError(f"dataset {path} has no obs_spec in data.attrs['env_args']")
    env_spec.check_compatible(info.spec, f"task {task!r} (here) vs dataset {path} (there)")


def _sim_evaluator(
    task: str, task_cfg: dict[str, Any], cfg: TrainConfig, seed: int
) -> Callable[[Policy], dict[str, float]]:
    """Success rate etc. of a policy in ``cfg.eval_envs`` simulated worlds."""
    from robolearn.eval.evaluate import evaluate

    env = VecEnv(
        task, cfg.eval_envs, seed=seed, task_overrides={**task_cfg, "terminate_on_success": True}
    )

    def run(policy: Policy) -> dict[str, float]:
        result = evaluate(policy, env, cfg.eval_episodes, seed=seed, progress=False)
        return {
            "success_rate": result.success_rate,
            "mean_return": result.mean_return,
            "mean_length": result.mean_length,
        }

    return run


def main() -> None:
    run_hydra_main(PROG, _main)


if __name__ == "__main__":
    main()
