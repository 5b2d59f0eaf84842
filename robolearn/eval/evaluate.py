"""``evaluate(policy, env, n_episodes) -> EvalResult``: batched rollouts and their statistics.

Which episodes count: the first ``n_episodes`` to *start*, each run to its end. Counting the
first ``n_episodes`` to *finish* instead would over-sample short episodes, and successful
episodes are usually the short ones (they end at success, failures run into the time limit), so
it would inflate the success rate. Whether an episode starts early or late says nothing about
its outcome (resets are i.i.d.), so the episodes counted here are an unbiased sample. Worlds
whose episodes do not count keep stepping (the env steps all worlds) and are ignored.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from robolearn.checkpoint import check_policy_env_compatible
from robolearn.envs.vec_env import VecEnv
from robolearn.eval.runner import ChunkedPolicyRunner, ChunkPolicy
from robolearn.eval.video import VideoRecorder
from robolearn.utils.files import write_text_atomic
from robolearn.utils.stats import wilson_interval

EVAL_INFO_FILE = "eval_info.json"


@dataclass(frozen=True)
class EvalResult:
    task: str
    n_episodes: int
    successes: int
    success_rate: float
    ci95: tuple[float, float]  # Wilson score interval of the success rate
    mean_return: float
    mean_length: float
    episode_success: np.ndarray  # (n_episodes,) bool, in the order the episodes started
    episode_return: np.ndarray  # (n_episodes,) float
    episode_length: np.ndarray  # (n_episodes,) int, control steps
    num_envs: int
    env_steps: int  # control steps summed over all worlds, counted episodes or not
    wall_time_s: float
    seed: int | None
    video: str | None
    chunking: str = "receding"  # how chunks were executed (ChunkedPolicyRunner)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci95"] = list(self.ci95)
        for key in ("episode_success", "episode_return", "episode_length"):
            d[key] = getattr(self, key).tolist()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def summary(self) -> str:
        low, high = self.ci95
        return (
            f"{self.task}: success {self.success_rate:.1%} (95% CI {low:.1%}-{high:.1%}) over "
            f"{self.n_episodes} episodes, mean return {self.mean_return:.2f}, "
            f"mean length {self.mean_length:.1f}"
        )

    def write_eval_info(self, path: str | os.PathLike[str]) -> Path:
        """Write ``eval_info.json`` atomically; ``path`` is the file or the directory for it."""
        path = Path(path)
        if path.is_dir():
            path = path / EVAL_INFO_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text_atomic(path, self.to_json())


def evaluate(
    policy: ChunkPolicy,
    env: VecEnv,
    n_episodes: int,
    *,
    seed: int | None = None,
    video: str | os.PathLike[str] | None = None,
    video_episodes: int = 3,
    progress: bool = True,
    chunking: str = "receding",
    ensemble_m: float = 0.01,
) -> EvalResult:
    """Roll ``policy`` out in all of ``env``'s worlds until ``n_episodes`` episodes are done.

    Create the env with ``task_overrides={"terminate_on_success": True}`` so that an episode ends
    at success. ``seed`` seeds the env's resets and the policy's sampling; the caller's torch RNG
    state is left as it was. ``video``: an mp4 path for the first episodes of worlds
    ``0..video_episodes-1``, skipped with a message when rendering is unavailable.
    ``chunking``/``ensemble_m``: how chunks are executed (:class:`ChunkedPolicyRunner`).
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    check_policy_env_compatible(policy, env.spec)
    device = _device_of(policy, env.device)
    start = time.perf_counter()
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda, enabled=seed is not None), _eval_mode(policy):
        if seed is not None:
            torch.manual_seed(seed)
        obs, _ = env.reset(seed=seed)
        policy.reset()
        runner = ChunkedPolicyRunner(policy, env.num_envs, device, chunking, ensemble_m)
        tally = _EpisodeTally(env.num_envs, n_episodes)
        recorder = None
        if video is not None and video_episodes > 0:
            recorder = VideoRecorder.open(env, video, min(video_episodes, n_episodes))
        video_path = None
        steps = 0
        bar = tqdm(total=n_episodes, desc="eval", unit="ep", disable=not progress)
        try:
            while not tally.done:
                if recorder is not None:
                    recorder.capture()
                obs, _, _, _, info = env.step(runner.act(obs["policy"]).to(env.device))
                steps += 1
                episode = info.get("episode")
                if episode is None:
                    continue
                runner.reset(episode["env_ids"])
                bar.update(tally.record(episode))
                bar.set_postfix(success=f"{tally.success_rate:.0%}")
                if recorder is not None:
                    recorder.episodes_ended(episode["env_ids"])
                    if recorder.done:
                        video_path, recorder = recorder.close(), None
        finally:
            bar.close()
            if recorder is not None:  # evaluation was interrupted: no partial video
                recorder.discard()
    successes = int(tally.success.sum())
    return EvalResult(
        task=env.spec.task,
        n_episodes=n_episodes,
        successes=successes,
        success_rate=successes / n_episodes,
        ci95=wilson_interval(successes, n_episodes),
        mean_return=float(tally.ret.mean()),
        mean_length=float(tally.length.mean()),
        episode_success=tally.success,
        episode_return=tally.ret,
        episode_length=tally.length,
        num_envs=env.num_envs,
        env_steps=steps * env.num_envs,
        wall_time_s=time.perf_counter() - start,
        seed=seed,
        video=None if video_path is None else str(video_path),
        chunking=chunking if chunking == "receding" else f"{chunking}(m={ensemble_m:g})",
    )


class _EpisodeTally:
    """Counts the first ``n`` episodes to start (see the module docstring)."""

    def __init__(self, num_envs: int, n: int):
        self.n = n
        # Index of the counted episode each world is running, or -1 for an uncounted one.
        self.slot = [i if i < n else -1 for i in range(num_envs)]
        self.started = min(num_envs, n)
        self.finished = 0
        self.success = np.zeros(n, dtype=bool)
        self.ret = np.zeros(n)
        self.length = np.zeros(n, dtype=np.int64)

    @property
    def done(self) -> bool:
        return self.finished == self.n

    @property
    def success_rate(self) -> float:
        return float(self.success.sum()) / max(self.finished, 1)

    def record(self, episode: dict[str, torch.Tensor]) -> int:
        """Store finished counted episodes; start counting new ones. Returns how many finished."""
        finished_before = self.finished
        columns = (episode[k].cpu().tolist() for k in ("env_ids", "success", "return", "length"))
        for world, success, ret, length in zip(*columns, strict=True):
            k = self.slot[world]
            if k >= 0:
                self.success[k], self.ret[k], self.length[k] = success, ret, length
                self.finished += 1
            self.slot[world] = self.started if self.started < self.n else -1
            self.started = min(self.started + 1, self.n)
        return self.finished - finished_before


def _device_of(policy: ChunkPolicy, default: torch.device) -> torch.device:
    if isinstance(policy, nn.Module):
        tensor = next(itertools.chain(policy.parameters(), policy.buffers()), None)
        if tensor is not None:
            return tensor.device
    return default


@contextlib.contextmanager
def _eval_mode(policy: ChunkPolicy) -> Iterator[None]:
    """Evaluate in eval mode (dropout off), then give a training policy back as it was."""
    if not isinstance(policy, nn.Module):
        yield
        return
    was_training = policy.training
    policy.eval()
    try:
        yield
    finally:
        policy.train(was_training)
