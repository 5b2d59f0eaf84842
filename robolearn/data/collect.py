"""Collect scripted-expert demonstrations from N parallel worlds into a robomimic-schema file.

Each world's steps are buffered until its episode ends; only then is the episode written, so a
file never holds a truncated episode: every demo ends in success, termination or the time limit,
and its last ``dones`` entry is 1 (``success`` and ``truncated`` demo attributes say which).
Episodes still running when collection stops are dropped, not cut.

The expert's success rate counts every episode that *started* before the target number of demos
was reached, including the in-flight ones, which are run to their end first. Stopping at the
first ``num_episodes`` finished episodes instead would favour short episodes, i.e. successes
(failures run to the time limit), and overstate the expert.

``states`` rows are MuJoCo state vectors of spec :data:`STATE_SPEC` (qpos, qvel, ctrl,
mocap_pos, mocap_quat, in ``mj_getState`` order): ``mujoco.mj_setState(model, data, row,
STATE_SPEC)`` followed by ``mj_forward`` restores the world at ``obs[t]``. The model is rebuilt
from ``env_args["env_kwargs"]`` (task name + full task config). Not recorded: simulation time
(no task depends on it), applied external forces (the collector applies none), and per-world
domain parameters (constant by default; the ``domain_params`` obs term records them).

``action_noise`` > 0 collects DART-style demos (Laskey et al. 2017): the env executes the
expert's action plus Gaussian noise (std ``action_noise`` × half the action range), while
``actions`` records the expert's clean action. The demos then visit the states a slightly-off
policy reaches and label them with the expert's correction, which is what a cloned policy needs
to recover from its own drift instead of compounding it. ``states`` still restore ``obs[t]``
exactly; replaying ``actions`` open-loop does not reproduce the episode (the noise is not
recorded), so ``env_args["collection"]["action_noise"]`` says so.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import torch
from tqdm import tqdm

from robolearn.data.hdf5 import EpisodeWriter, check_output_path
from robolearn.envs.vec_env import VecEnv
from robolearn.experts import ScriptedExpert, expert_class, make_expert
from robolearn.sim.batched import BatchedSim
from robolearn.utils.stats import wilson_interval

STATE_SPEC = int(
    mujoco.mjtState.mjSTATE_QPOS
    | mujoco.mjtState.mjSTATE_QVEL
    | mujoco.mjtState.mjSTATE_CTRL
    | mujoco.mjtState.mjSTATE_MOCAP_POS
    | mujoco.mjtState.mjSTATE_MOCAP_QUAT
)


@dataclass
class CollectResult:
    path: Path | None  # None when no episode was written (then no file was created)
    requested: int
    written: int
    attempts: int  # finished episodes counted for the success rate
    successes: int
    interrupted: bool

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else float("nan")

    @property
    def success_interval(self) -> tuple[float, float]:
        """Wilson 95% interval of the expert's success rate."""
        return wilson_interval(self.successes, self.attempts)


def physics_state(sim: BatchedSim) -> np.ndarray:
    """(N, S) float64 state rows of spec :data:`STATE_SPEC` (a copy)."""
    parts = [sim.qpos, sim.qvel, sim.ctrl, sim.mocap_pos.flatten(1), sim.mocap_quat.flatten(1)]
    return torch.cat([p.to(torch.float64) for p in parts], dim=1).cpu().numpy()


def collect(
    task: str,
    num_episodes: int,
    output: str | os.PathLike,
    *,
    num_envs: int = 64,
    backend: str = "cpu",
    device: str | None = None,
    seed: int = 0,
    task_overrides: dict[str, Any] | None = None,
    overwrite: bool = False,
    valid_fraction: float = 0.1,
    keep_failed: bool = False,
    max_attempts: int | None = None,
    progress: bool = True,
    action_noise: float = 0.0,
) -> CollectResult:
    """Write ``num_episodes`` expert demos of ``task`` to ``output`` and measure the expert.

    Episodes end at success (``terminate_on_success`` defaults to true here), termination or
    the time limit. The expert's ``demo_task_overrides`` (e.g. push's tighter success radius)
    apply under ``task_overrides``; the expert's success rate is measured under the merged
    settings. Failed episodes are written only with ``keep_failed``. Collection gives up after
    ``max_attempts`` counted episodes (default ``10 * num_episodes``) so that a broken expert
    cannot loop forever. ``KeyboardInterrupt`` stops it cleanly: the completed episodes
    are published and the result says ``interrupted``. ``action_noise``: see the module
    docstring (DART noise on the executed actions; the expert's success rate is measured under it).
    """
    if isinstance(num_episodes, bool) or not isinstance(num_episodes, int) or num_episodes <= 0:
        raise ValueError(f"num_episodes must be a positive integer, got {num_episodes!r}")
    if not 0 <= action_noise < 1:
        raise ValueError(f"action_noise must be in [0, 1), got {action_noise!r}")
    path = check_output_path(output, overwrite)  # before any simulation work
    overrides = {
        "terminate_on_success": True,
        **expert_class(task).demo_task_overrides,
        **(task_overrides or {}),
    }
    env = VecEnv(
        task, num_envs, backend=backend, device=device, seed=seed, task_overrides=overrides
    )
    try:
        if env.model.na:
            raise NotImplementedError(
                f"task {task!r} has actuator activations, which `states` does not record yet"
            )
        expert = make_expert(task, num_envs, env.device, env.task.cfg.control, seed)
        writer = EpisodeWriter(
            path,
            _env_args(env, backend, type(expert).__name__, seed, action_noise),
            env.spec,
            overwrite=overwrite,
            valid_fraction=valid_fraction,
            seed=seed,
        )
        result = CollectResult(None, num_episodes, 0, 0, 0, interrupted=False)
        bar = tqdm(total=num_episodes, desc=f"collect {task}", unit="ep", disable=not progress)
        episodes = _Episodes(
            num_envs, writer, result, bar, keep_failed, max_attempts or 10 * num_episodes
        )
        try:
            with writer, bar:
                _run(env, expert, episodes, action_noise, seed)
        except KeyboardInterrupt:
            result.interrupted = True
        result.path = writer.close()
        result.written = writer.num_episodes
        return result
    finally:
        env.close()


class _Episodes:
    """Per-world step buffers, and what happens to an episode when it ends."""

    def __init__(
        self,
        num_envs: int,
        writer: EpisodeWriter,
        result: CollectResult,
        bar: tqdm,
        keep_failed: bool,
        max_attempts: int,
    ):
        self.writer, self.result, self.bar = writer, result, bar
        self.keep_failed, self.max_attempts = keep_failed, max_attempts
        self.buffers: list[list[dict[str, np.ndarray]]] = [[] for _ in range(num_envs)]
        #: Whether each world's current episode counts (it started before the target was met).
        self.counting = np.ones(num_envs, dtype=bool)

    def append(self, step: dict[str, np.ndarray]) -> None:
        """Add one step, arrays (N, ...); rows are kept as views until their episode ends."""
        for i, rows in enumerate(self.buffers):
            rows.append({k: v[i] for k, v in step.items()})

    def finish(self, env_ids: np.ndarray, success: np.ndarray, truncated: np.ndarray) -> None:
        """Count and write (if wanted) the episodes that ended; once the target is met, the
        episodes these worlds start next are not counted."""
        result, writer = self.result, self.writer
        for i, ok in zip(env_ids, success, strict=True):
            rows, self.buffers[i] = self.buffers[i], []
            if not self.counting[i]:
                continue
            result.attempts += 1
            result.successes += int(ok)
            if (ok or self.keep_failed) and writer.num_episodes < result.requested:
                _write(writer, rows, bool(ok), bool(truncated[i]))
                self.bar.update(1)
                self.bar.set_postfix(expert_success=f"{result.success_rate:.1%}", refresh=False)
        if writer.num_episodes >= result.requested or result.attempts >= self.max_attempts:
            self.counting[env_ids] = False


def _run(
    env: VecEnv, expert: ScriptedExpert, episodes: _Episodes, action_noise: float, seed: int
) -> None:
    """Step until the target is met, then until every counted in-flight episode has ended."""
    low, high = env.spec.action.low, env.spec.action.high
    noise_std = action_noise * (torch.as_tensor(high) - torch.as_tensor(low)).to(env.device) / 2
    generator = torch.Generator(env.device).manual_seed(seed)
    obs, _ = env.reset()
    expert.reset()
    obs_np, state = _numpy_obs(obs), physics_state(env.sim)
    while episodes.counting.any():
        action = expert(obs["policy"]).clamp(low, high)  # without noise: what the env executes
        executed = action
        if action_noise:
            noise = torch.randn(action.shape, generator=generator, device=action.device)
            executed = (action + noise_std * noise).clamp(low, high)
        obs, reward, terminated, truncated, info = env.step(executed)
        done = (terminated | truncated).cpu().numpy()
        next_np = reset_np = _numpy_obs(obs)
        if done.any():  # a finished world's next observation is its last one, not the reset one
            final = _numpy_obs(info["final_obs"])
            next_np = {k: np.where(_column(done, v), final[k], v) for k, v in reset_np.items()}
        step = {f"obs/{k}": v for k, v in obs_np.items()}
        step |= {f"next_obs/{k}": v for k, v in next_np.items()}
        step |= {
            "actions": action.cpu().numpy(),
            "rewards": reward.cpu().numpy(),
            "dones": done.astype(np.uint8),
            "states": state,
        }
        episodes.append(step)
        if done.any():
            ended = info["episode"]
            episodes.finish(
                ended["env_ids"].cpu().numpy(),
                ended["success"].cpu().numpy(),
                truncated.cpu().numpy(),
            )
            expert.reset(ended["env_ids"])
        obs_np, state = reset_np, physics_state(env.sim)


def _write(
    writer: EpisodeWriter, rows: list[dict[str, np.ndarray]], success: bool, truncated: bool
) -> None:
    arrays = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    writer.add_episode(
        {k[4:]: v for k, v in arrays.items() if k.startswith("obs/")},
        next_obs={k[9:]: v for k, v in arrays.items() if k.startswith("next_obs/")},
        actions=arrays["actions"],
        rewards=arrays["rewards"],
        dones=arrays["dones"],
        states=arrays["states"],
        attrs={"success": success, "truncated": truncated},
    )


def _numpy_obs(obs: dict[str, dict[str, torch.Tensor]]) -> dict[str, np.ndarray]:
    """Every term of every group once, as numpy copies.

    Copies, because a term may be a view of simulator memory that the next step overwrites.
    Critic-only terms are kept too, so that RL can learn a value function from the demos.
    """
    terms: dict[str, torch.Tensor] = {}
    for group in obs.values():
        terms.update(group)
    return {k: v.detach().cpu().numpy().copy() for k, v in terms.items()}


def _column(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``mask`` (N,) reshaped to broadcast over ``like`` (N, ...)."""
    return mask.reshape(-1, *([1] * (like.ndim - 1)))


def _env_args(
    env: VecEnv, backend: str, expert: str, seed: int, action_noise: float = 0.0
) -> dict[str, Any]:
    cfg = env.task.cfg
    model = env.model
    return {
        "env_name": f"robolearn/{env.task.name}",
        "env_kwargs": {
            "task": env.task.name,
            "task_config": dataclasses.asdict(cfg),
            "backend": backend,
            "control_freq": cfg.control_freq,
            "substeps": env.substeps,
        },
        "states": {
            "mj_state_spec": STATE_SPEC,
            "layout": [
                ["qpos", model.nq],
                ["qvel", model.nv],
                ["ctrl", model.nu],
                ["mocap_pos", 3 * model.nmocap],
                ["mocap_quat", 4 * model.nmocap],
            ],
            "mujoco_version": mujoco.__version__,
        },
        "collection": {"expert": expert, "seed": seed, "action_noise": action_noise},
    }
