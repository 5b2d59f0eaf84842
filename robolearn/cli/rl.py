"""``robolearn-rl``: PPO fine-tuning of a pretrained policy, or PPO from scratch, in the batched sim.

    robolearn-rl init=outputs/2025-06-01/12-00-00_bc_lift task=lift num_envs=256
    robolearn-rl task=reach total_env_steps=2000000                       # from scratch
    robolearn-rl resume=outputs/2025-06-01/13-00-00_ppo_lift total_env_steps=10000000
    robolearn-rl init=<bc run> rl.demo_reg_coef=0 rl.demo_dataset=datasets/lift_expert.hdf5
    robolearn-rl task=lift_flat curriculum=privileged                     # curricula (issue 5)
    robolearn-rl task=lift curriculum=[privileged,alp_gmm] +task.domain.object_friction=[0.5,1.5]

``init``: a ``bc`` checkpoint becomes a Gaussian PPO actor (the same network; a
deterministic-head BC gets a learned state-independent std); a ``diffusion``/``edm`` checkpoint
goes to DPPO. Its observation/action spec must match the task's (checked before anything runs).
Checkpoints are in the imitation format (``robolearn-eval checkpoint=<run dir>`` reads them),
with the critic, π_BC, optimizer and RL state in ``training_state/`` for ``resume``. A finished
run evaluates its policy (``eval.num_episodes``) and prints the success rate with its Wilson
interval. ``curriculum=<name>`` or ``curriculum=[<name>,...]`` (``conf/curriculum/``) adds
curricula (:mod:`robolearn.curricula.hooks`); a privileged-action run exports and evaluates its
policy without the privileged action dimensions, at β = 0. Exit status: 0 done, 2 bad input,
3 stopped on non-finite env data or a diverging update (a checkpoint of the last good weights is
saved), 130 interrupted (after saving).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from robolearn.assets import conf_dir
from robolearn.checkpoint import (
    check_policy_env_compatible,
    load_config,
    load_policy,
    read_spec,
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
from robolearn.curricula.hooks import attach_curricula, parse_curricula
from robolearn.envs.vec_env import VecEnv
from robolearn.rl.ppo import RLConfig
from robolearn.rl.runner import PPORunner, RLResult
from robolearn.sim.batched import BACKENDS
from robolearn.tasks import TaskConfig, make_task
from robolearn.utils.config import from_dict
from robolearn.utils.loggers import LoggerConfig, make_logger

PROG = "robolearn-rl"
EXIT_UNSTABLE = 3


def run_name(algorithm: str, task: str, resume: str | None) -> str:
    """The run dir's name (``conf/rl.yaml``'s ``name``): ``<algorithm>_<task>``, or for a resumed
    run ``resume_<the resumed run dir's name>``. Hydra names the dir before the resumed run's
    config is read from its checkpoint, so ``task`` is then the default, not the run's."""
    if resume is None:
        return f"{algorithm}_{task}"
    path = Path(str(resume).rstrip("/"))
    if path.parent.name == "checkpoints":  # a checkpoint dir inside the run dir
        path = path.parent.parent
    return f"resume_{path.name}"


OmegaConf.register_new_resolver("rl_run_name", run_name, replace=True)

#: Keys (or key prefixes) a resumed run may change; the rest come from its checkpoint.
RESUMABLE = (
    "total_env_steps",
    "logger",
    "device",
    "threads",
    "name",
    "progress",
    "eval",
    "resume",
    "rl.checkpoint_every",
    "rl.log_every",
    # The β schedule may change mid-run (e.g. finer steps near where the privilege stops
    # sufficing); the privileged action's bounds, which shape the actor, may not.
    "curriculum.privileged.schedule",
    # So may the reward (a reward curriculum): what it pays, not what the policy sees or does;
    # re-select the run's task to reach it (task=lift_flat task.lift_paid=pinched).
    "task.reward_type",
    "task.lift_paid",
    "task.reach_to",
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RLSettings:
    """The top-level scalar keys of ``conf/rl.yaml``."""

    init: str | None = None
    resume: str | None = None
    name: str = ""
    num_envs: int = 256
    total_env_steps: int = 5_000_000
    seed: int = 0
    device: str | None = None
    threads: int = 1
    progress: bool = True

    def __post_init__(self):
        for key in ("init", "resume", "device"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"config key {key!r} must be a string, got {value!r}")
        if self.num_envs <= 0 or self.total_env_steps <= 0:
            raise ValueError("num_envs and total_env_steps must be positive")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


@dataclass(frozen=True)
class SimSettings:
    backend: str = "cpu"
    device: str | None = None


@dataclass(frozen=True)
class EvalSettings:
    num_episodes: int = 100
    num_envs: int = 50
    seed: int = 100000


@dataclass(frozen=True)
class RunConfig:
    settings: RLSettings
    rl: RLConfig
    sim: SimSettings
    eval: EvalSettings
    logger: LoggerConfig
    task: str
    task_overrides: dict[str, Any]
    curriculum: dict[str, Any]  # conf/curriculum/: one mapping per selected curriculum


def parse_config(config: dict[str, Any]) -> RunConfig:
    """Type-check every key (``ValueError`` naming the first bad one); no files are read."""
    config = dict(config)
    config.pop("policy", None)  # written by the runner into its checkpoints
    task_cfg = dict(config.pop("task"))
    task = task_cfg.pop("name", None)
    if not isinstance(task, str):
        raise ValueError(f"the task config needs a string `name`, got {task!r}")
    task_config = make_task(task, task_cfg).cfg  # unknown task names and keys
    sim = from_dict(SimSettings, config.pop("sim"), path="sim.")
    if sim.backend not in BACKENDS:
        raise ValueError(f"unknown sim backend {sim.backend!r}; choose from {BACKENDS}")
    rl = from_dict(RLConfig, config.pop("rl"), path="rl.")
    logger = from_dict(LoggerConfig, config.pop("logger"), path="logger.")
    ev = from_dict(EvalSettings, config.pop("eval", None), path="eval.")
    curriculum = dict(config.pop("curriculum", None) or {})
    parse_curricula(curriculum)
    if "ads" not in curriculum:  # ADS pays its own (never positive) rewards
        _warn_if_success_forfeits_reward(task, task_config)
    settings = from_dict(RLSettings, config)
    return RunConfig(settings, rl, sim, ev, logger, task, task_cfg, curriculum)


@dataclass
class RLJob:
    runner: PPORunner
    run: RunConfig
    config: dict[str, Any]
    run_dir: Path

    def close(self) -> None:
        self.runner.logger.close()


def prepare(config: dict[str, Any], run_dir: Path, command_line: list[str]) -> RLJob:
    """Check the config and its inputs and build the runner; bad input raises ``ValueError``,
    ``OSError`` or ``KeyError`` naming the culprit, before any simulation of the run."""
    config = dict(config)
    resume = None
    if config.get("init") is not None and config.get("resume") is not None:
        raise ValueError("give either init=<pretrained checkpoint> or resume=<rl run>, not both")
    if config.get("resume") is not None:
        resume = resolve_checkpoint(to_absolute_path(str(config["resume"])))
        config = _resume_config(resume, config, command_line)
    if config.get("init") is not None and resume is None:
        config["init"] = str(resolve_checkpoint(to_absolute_path(str(config["init"]))))
    if config.get("rl", {}).get("demo_dataset"):
        config["rl"]["demo_dataset"] = to_absolute_path(str(config["rl"]["demo_dataset"]))
    for entry in (config.get("curriculum") or {}).values():
        if isinstance(entry, dict) and entry.get("dataset"):
            entry["dataset"] = to_absolute_path(str(entry["dataset"]))
    run = parse_config(config)
    s = run.settings
    if s.threads:
        torch.set_num_threads(s.threads)
    warm_start = s.init is not None

    # The pretrained policy first: a spec mismatch or an unknown kind fails before any sim.
    spec = env_spec(run.task, run.task_overrides)
    source = resume or (Path(s.init) if s.init else None)
    policy = None
    if source is not None:
        kind = read_spec(source)["policy"]["name"]
        policy = load_policy(source, "cpu", use_ema=resume is None)
        check_policy_env_compatible(policy, spec)
        if kind not in ("bc", "diffusion", "edm"):
            raise ValueError(
                f"init checkpoint has policy kind {kind!r}; RL fine-tunes bc, diffusion, edm"
            )
    from robolearn.rl.build import frozen_reference, make_actor, scratch_policy

    env = VecEnv(
        run.task,
        s.num_envs,
        backend=run.sim.backend,
        device=run.sim.device,
        seed=s.seed,
        task_overrides=run.task_overrides,
    )
    device = parse_device(s.device, env.device)
    if device != env.device:
        raise ValueError(
            f"device {device} differs from the sim's device {env.device}; networks and rollout "
            "storage live on the sim's device (set device=null or sim.device)"
        )
    train_env, curricula = attach_curricula(run.curriculum, env, run.rl.num_steps)
    # The privileged-action curriculum widens the action: its actor trains from scratch, and a
    # resumed run's widened actor is rebuilt here and filled from its training state.
    widened = train_env.spec.action.dim != env.spec.action.dim
    if widened and warm_start:
        raise ValueError(
            f"curriculum privileged trains a policy with {train_env.spec.action.dim} action dims "
            f"({env.spec.action.dim} + privileged) from scratch; init={s.init} has "
            f"{env.spec.action.dim}: drop init="
        )
    samples = env.num_envs * run.rl.num_steps
    if samples < max(2, run.rl.num_minibatches):
        raise ValueError(
            f"num_envs x rl.num_steps = {samples} samples per rollout: need at least 2 (advantages "
            f"are normalised over them) and one per minibatch (rl.num_minibatches="
            f"{run.rl.num_minibatches})"
        )
    torch.manual_seed(s.seed)
    if policy is None or widened:
        policy = scratch_policy(train_env, run.rl, s.seed)
    actor = make_actor(policy, run.rl)
    if curricula is not None:
        curricula.check_actor(actor)
    actor.to(device)
    reference = frozen_reference(actor) if warm_start else None
    from robolearn.rl.critic import Critic

    critic = Critic(train_env.spec, None, run.rl.critic_hidden_dims, run.rl.critic_activation)
    critic.to(device)
    demo_batches = None
    if run.rl.demo_dataset and run.rl.demo_bc_coef > 0:
        if not hasattr(actor, "demo_loss"):
            raise ValueError(
                f"rl.demo_bc_coef > 0: the {run.rl.name} actor ({type(actor).__name__}) has no "
                "BC loss on demo batches; set rl.demo_bc_coef=0"
            )
        demo_batches = _demo_batches(run, actor, env, device)
    logger = make_logger(run.logger, run_dir, run_dir.name, config)
    try:
        runner = PPORunner(
            train_env,
            actor,
            critic,
            run.rl,
            total_env_steps=s.total_env_steps,
            reference=reference,
            run_dir=run_dir,
            config=config,
            logger=logger,
            warm_start=warm_start,
            demo_batches=demo_batches,
            progress=s.progress,
            callbacks=[curricula] if curricula is not None else [],
        )
        if resume is not None:
            runner.restore(resume)
            log.info(
                "resuming from %s at iteration %d (%d env steps)",
                resume,
                runner.iteration,
                runner.env_steps,
            )
    except BaseException:
        logger.close()
        raise
    log.info(
        "%s on %s: %s, %d worlds, %d env steps, run dir %s",
        run.rl.name,
        run.task,
        f"init {s.init} ({policy.name})"
        if warm_start
        else f"from scratch ({policy.name} gaussian)",
        s.num_envs,
        s.total_env_steps,
        run_dir,
    )
    return RLJob(runner, run, config, run_dir)


def run_job(job: RLJob, prog: str = PROG) -> RLResult:
    """Train, then evaluate; exit statuses as in the module docstring."""
    try:
        result = job.runner.learn()
    except KeyboardInterrupt:
        last = job.runner.checkpoint
        where = f"the last checkpoint is {last[1]}" if last else "no checkpoint was saved"
        print(f"{prog}: aborted; {where}", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        job.close()
    if result.status == "interrupted":
        print(
            f"{prog}: interrupted at iteration {result.iteration}; saved checkpoint "
            f"{result.checkpoint}\nresume with: robolearn-rl resume={job.run_dir}",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_INTERRUPTED)
    if result.status != "done":
        what = "non-finite env data" if result.status == "non_finite" else "a diverging update"
        print(
            f"{prog}: stopped on {what}: {result.message}; saved the last good weights in "
            f"{result.checkpoint}",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_UNSTABLE)
    log.info(
        "trained %d iterations (%d env steps, %.0f env steps/s) in %.0f s; checkpoint %s",
        result.iteration,
        result.env_steps,
        result.env_steps_per_s,
        result.seconds,
        result.checkpoint,
    )
    ev = job.run.eval
    if ev.num_episodes > 0:
        from robolearn.eval.evaluate import evaluate

        eval_env = VecEnv(
            job.run.task,
            ev.num_envs,
            backend=job.run.sim.backend,
            device=job.run.sim.device,
            seed=ev.seed,
            task_overrides={**job.run.task_overrides, "terminate_on_success": True},
        )
        try:
            evaluation = evaluate(
                job.runner.export_policy(),
                eval_env,
                ev.num_episodes,
                seed=ev.seed,
                progress=job.run.settings.progress,
            )
        finally:
            eval_env.close()
        evaluation.write_eval_info(job.run_dir)
        print(f"{prog}: {evaluation.summary()}")
    return result


@hydra.main(config_path=str(conf_dir()), config_name="rl", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    try:
        job = prepare(
            plain_config(cfg), Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task)
        )
    except BAD_INPUT as e:
        fail(PROG, e)
    run_job(job)


# --- pieces ----------------------------------------------------------------------------------------
def _resume_config(checkpoint: Path, current: dict[str, Any], command_line: list[str]):
    """The checkpoint's config with the command line's resumable overrides applied."""
    saved = load_config(checkpoint)
    if "rl" not in saved or "total_env_steps" not in saved:
        raise ValueError(f"resume={checkpoint} is not a robolearn-rl checkpoint")
    return resume_config(
        checkpoint, saved, current, _drop_reselected_groups(saved, current, command_line), RESUMABLE
    )


#: What a config group selected in a run's config: a resumed run may re-select its own (Hydra
#: needs the selection to reach the group's resumable keys, e.g. ``task.lift_paid``).
GROUP_CHOICE = {
    "task": lambda config: (config.get("task") or {}).get("name"),
    "curriculum": lambda config: sorted(config.get("curriculum") or {}),
}


def _drop_reselected_groups(
    saved: dict[str, Any], current: dict[str, Any], command_line: list[str]
) -> list[str]:
    """The command line without selections of the resumed run's own ``task`` and curricula,
    which change nothing; selecting others is refused."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(list(command_line))
    kept = []
    for text, override in zip(command_line, overrides, strict=True):
        choice = GROUP_CHOICE.get(override.key_or_group)
        if choice is None or override.is_delete():
            kept.append(text)
            continue
        had, asked = choice(saved), choice(current)
        if had != asked:
            raise ValueError(
                f"cannot change the {override.key_or_group} of a resumed run: it trained with "
                f"{had}, the command line selects {asked}"
            )
    return kept


def _warn_if_success_forfeits_reward(task: str, cfg: TaskConfig) -> None:
    """Every task's dense reward is paid each step and never negative: an episode that ends at
    success stops those payments, so PPO learns to stay short of success (hovering beside an
    object earns more than lifting it and ending). Sparse rewards and dense ones in episodes that
    run on past success are fine."""
    if cfg.reward_type == "dense" and cfg.terminate_on_success:
        log.warning(
            "task %r: a dense reward with episodes that end at success pays PPO to avoid the "
            "success (the reward is never negative, so ending early forfeits it); add "
            "task.terminate_on_success=false, or use task.reward_type=sparse",
            task,
        )


def _demo_batches(run: RunConfig, actor: Any, env: VecEnv, device: torch.device):
    from robolearn.data.dataset import DemoDataset, WindowConfig
    from robolearn.data.hdf5 import validate_dataset
    from robolearn.rl.runner import demo_batch_iterator

    path = Path(run.rl.demo_dataset or "")
    if not path.is_file():
        raise FileNotFoundError(f"rl.demo_dataset {path} does not exist")
    info = validate_dataset(path)
    if info.spec is not None:
        env.spec.check_compatible(info.spec, f"task {run.task!r} (here) vs dataset {path} (there)")
    pcfg = actor.export_policy().cfg
    window = WindowConfig(pcfg.n_obs_steps, pcfg.horizon)
    dataset = DemoDataset(path, pcfg.data_keys or None, window, split="train")
    return demo_batch_iterator(dataset, run.rl.demo_batch_size, device, run.settings.seed)


def main() -> None:
    run_hydra_main(PROG, _main)


if __name__ == "__main__":
    main()
