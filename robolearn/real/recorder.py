"""``EpisodeRecorder``: deployed and teleoperated episodes into the demos' robomimic HDF5 schema.

Real rollouts become training data: each episode is a ``demo_<i>`` with ``obs``/``next_obs`` (the
spec's terms only), ``actions`` (the actions actually sent, after the safety layer), ``rewards``
(0 unless the robot knows them), ``dones`` (1 on the last recorded step) and attributes
``success`` (1/0, or -1 when unknown), ``fault`` (``"kind at step k: message"``, or ``""``),
``fault_kind`` and ``timestamps`` (``time.monotonic()`` of each step's observation).

**Durability.** After every episode the whole file is rewritten through
:class:`~robolearn.data.hdf5.EpisodeWriter`, which writes beside the target and renames over it,
so that the file on disk is always a complete, valid dataset of every finished episode: a
fault, Ctrl-C, a crash or a full disk at any moment loses at most the episode in progress, and a
failed write (``ENOSPC``) leaves the previous file untouched and raises :class:`RecordingError`.
The episodes are kept in memory for the rewrite: simple and crash-safe at the size of a
deployment or teleoperation session (tens of episodes); start a new file per session for long
camera recordings.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robolearn.data.hdf5 import EpisodeWriter, check_output_path
from robolearn.real.faults import Fault
from robolearn.spec import ObsSpec

log = logging.getLogger(__name__)


class RecordingError(OSError):
    """Writing the file failed (e.g. the disk is full); the episodes on disk are intact."""


@dataclass
class _Episode:
    obs: list[dict[str, np.ndarray]] = field(default_factory=list)
    next_obs: list[dict[str, np.ndarray]] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    dones: list[int] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)


class EpisodeRecorder:
    """``start_episode()``, ``add_step(...)`` per transition, ``end_episode(success, fault)``.

    ``path`` must not exist yet (a session never overwrites an earlier one); ``env_args`` goes
    into ``data.attrs["env_args"]`` (the robot, the checkpoint, the task settings).
    """

    def __init__(self, path: str | os.PathLike, spec: ObsSpec, env_args: Mapping[str, Any]):
        self.path = check_output_path(path)
        self.spec, self.env_args = spec, dict(env_args)
        self.keys = tuple(spec.groups["policy"])
        self._done: list[tuple[_Episode, dict[str, Any]]] = []
        self._current: _Episode | None = None
        self.num_written = 0  # episodes in the file on disk

    def start_episode(self) -> None:
        if self._current is not None:
            raise RuntimeError("start_episode() while an episode is recording; end_episode() first")
        self._current = _Episode()

    def add_step(
        self,
        obs: Mapping[str, np.ndarray],
        action_sent: np.ndarray,
        next_obs: Mapping[str, np.ndarray],
        reward: float = 0.0,
        done: bool = False,
        timestamp: float | None = None,
    ) -> None:
        """One transition; ``timestamp`` defaults to ``obs["timestamp"]``."""
        episode = self._require_episode()
        episode.obs.append(self._terms(obs, "obs"))
        episode.next_obs.append(self._terms(next_obs, "next_obs"))
        episode.actions.append(np.asarray(action_sent, dtype=np.float32).reshape(-1))
        episode.rewards.append(float(reward))
        episode.dones.append(int(bool(done)))
        episode.timestamps.append(float(obs["timestamp"] if timestamp is None else timestamp))

    def end_episode(self, success: bool | None, fault: Fault | None = None) -> Path | None:
        """Close the episode and rewrite the file with it; the file's path, or ``None`` when the
        episode has no complete step (nothing to record). Raises :class:`RecordingError` when the
        write fails; the file then holds the episodes before this one."""
        episode = self._require_episode()
        self._current = None
        if not episode.actions:
            log.warning("episode ended before its first complete step: not recorded")
            return None
        attrs = {
            "success": -1 if success is None else int(success),
            "fault": "" if fault is None else str(fault),
            "fault_kind": "" if fault is None else fault.kind,
            "timestamps": np.asarray(episode.timestamps, dtype=np.float64),
        }
        self._done.append((episode, attrs))
        self._publish()
        return self.path

    def close(self) -> Path | None:
        """End an episode left open (recorded as it is, success unknown), and publish episodes a
        write did not get to (one interrupted by Ctrl-C); the file, if any."""
        if self._current is not None:
            self.end_episode(None)
        elif len(self._done) > self.num_written:
            self._publish()
        return self.path if self.num_written else None

    # --- internals -----------------------------------------------------------------------------
    def _require_episode(self) -> _Episode:
        if self._current is None:
            raise RuntimeError("no episode is recording; call start_episode() first")
        return self._current

    def _terms(self, obs: Mapping[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
        missing = [k for k in self.keys if k not in obs]
        if missing:
            raise ValueError(f"{where} lacks the spec term {missing[0]!r}")
        return {k: np.array(obs[k], dtype=self.spec.terms[k].dtype) for k in self.keys}

    def _publish(self) -> None:
        writer: EpisodeWriter | None = None
        try:
            writer = EpisodeWriter(self.path, self.env_args, self.spec, overwrite=True)
            for episode, attrs in self._done:
                writer.add_episode(
                    {k: np.stack([o[k] for o in episode.obs]) for k in self.keys},
                    next_obs={k: np.stack([o[k] for o in episode.next_obs]) for k in self.keys},
                    actions=np.stack(episode.actions),
                    rewards=np.asarray(episode.rewards, dtype=np.float32),
                    dones=_dones(episode.dones),
                    attrs=attrs,
                )
            writer.close()
        except OSError as e:
            if writer is not None:  # drop the temporary file; the published one is untouched
                with contextlib.suppress(Exception):
                    writer.discard()
            kept = (
                f"{self.num_written} earlier episode(s) there intact"
                if self.num_written
                else ("no file written")
            )
            error = RecordingError(f"cannot write {self.path}: {e.strerror or e}; {kept}")
            error.errno = e.errno
            raise error from e
        except BaseException:  # Ctrl-C mid-write: the previous file stays as it was
            if writer is not None:
                writer.discard()
            raise
        self.num_written = len(self._done)


def _dones(dones: list[int]) -> np.ndarray:
    """The recorded flags, with 1 on the last step: the recording ends there whatever the
    reason (success, time limit, fault)."""
    out = np.asarray(dones, dtype=np.uint8)
    out[-1] = 1
    return out
