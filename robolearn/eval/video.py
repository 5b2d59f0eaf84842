"""mp4 of the first episode of worlds ``0..k-1`` of a :class:`VecEnv`, side by side.

Rendering copies one world's state from the batched sim into a private ``MjData`` and draws it
with ``mujoco.Renderer`` (headless through ``MUJOCO_GL=egl`` or ``osmesa``; ``robolearn`` picks
one at import when there is no display). Shadows, reflections and multisampling are off: with
them a frame costs several times as much (DESIGN.md, "Rendering"), and a video for eyeballing a
policy does not need them.

Video is a by-product of evaluation, never a reason for it to fail: without an OpenGL backend or
without ``imageio[ffmpeg]`` the recorder is not created, and a rendering error mid-run drops the
video, each time with a one-line message.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import os
from pathlib import Path

import mujoco
import numpy as np
import torch

from robolearn.envs.vec_env import VecEnv

log = logging.getLogger(__name__)


class VideoRecorder:
    """Call :meth:`capture` before each env step and :meth:`episodes_ended` after it; a world's
    tile freezes on its last frame once its first episode is over."""

    def __init__(
        self, env: VecEnv, path: Path, renderer: mujoco.Renderer, worlds: int, camera: str
    ):
        import imageio.v2 as imageio

        self.env, self.path, self.renderer, self.camera = env, path, renderer, camera
        self.model = renderer.model
        self.data = mujoco.MjData(self.model)
        # The arm is made of collision primitives in geom group 3, hidden by default.
        self.scene_option = mujoco.MjvOption()
        self.scene_option.geomgroup[3] = 1
        self.recording, self.discarded = list(range(worlds)), False
        # Object sizes are per world (domain randomisation) and fixed within an episode.
        self.geom_size = env.sim.model_field("geom_size")[:worlds].cpu().numpy()
        self.tiles = [np.zeros((renderer.height, renderer.width, 3), np.uint8)] * worlds
        self.tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        fps = env.spec.action.control_freq
        self.writer = imageio.get_writer(self.tmp, fps=fps, codec="libx264", macro_block_size=1)

    @classmethod
    def open(
        cls,
        env: VecEnv,
        path: str | os.PathLike[str],
        worlds: int,
        size: int = 256,
        camera: str = "agentview",
    ) -> VideoRecorder | None:
        """A recorder, or ``None`` (with a message) when video cannot be made here."""
        if not all(importlib.util.find_spec(m) for m in ("imageio", "imageio_ffmpeg")):
            log.warning(
                "video skipped: mp4 encoding needs imageio[ffmpeg] (pip install imageio[ffmpeg])"
            )
            return None
        model = copy.deepcopy(env.model)
        model.vis.quality.offsamples = 0
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, size)
        model.vis.global_.offheight = max(model.vis.global_.offheight, size)
        try:
            renderer = mujoco.Renderer(model, size, size)
        except Exception as err:  # any GL failure means "no video", never a failed evaluation
            backend = os.environ.get("MUJOCO_GL", "<unset>")
            log.warning(
                "video skipped: no OpenGL backend (MUJOCO_GL=%s; install libegl1 or libosmesa6): %s",
                backend,
                str(err).splitlines()[0] if str(err) else type(err).__name__,
            )
            return None
        renderer.scene.flags[int(mujoco.mjtRndFlag.mjRND_SHADOW)] = 0
        renderer.scene.flags[int(mujoco.mjtRndFlag.mjRND_REFLECTION)] = 0
        try:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            return cls(env, path, renderer, min(worlds, env.num_envs), camera)
        except Exception as err:
            log.warning("video skipped: cannot write %s: %s", path, err)
            renderer.close()
            return None

    @property
    def done(self) -> bool:
        return not self.recording

    def capture(self) -> None:
        """Render the current state of the worlds still in their first episode; write a frame."""
        if self.done:
            return
        try:
            for world in self.recording:
                self.tiles[world] = self._render(world)
            self.writer.append_data(np.concatenate(self.tiles, axis=1))
        except Exception as err:  # a broken video must not end the evaluation
            log.warning("video skipped: rendering failed: %s", err)
            self.discard()

    def episodes_ended(self, env_ids: torch.Tensor) -> None:
        ended = set(env_ids.tolist())
        self.recording = [w for w in self.recording if w not in ended]

    def close(self) -> Path | None:
        """Finish the file; the mp4's path, or ``None`` when there is no video."""
        if self.discarded:
            return None
        try:
            self.writer.close()
            self.renderer.close()
        except Exception as err:
            log.warning("video skipped: encoding failed: %s", err)
            self.discard()
            return None
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        """Stop recording and delete the partial file (idempotent)."""
        if self.discarded:
            return
        self.recording, self.discarded = [], True
        with contextlib.suppress(Exception):
            self.writer.close()
        self.renderer.close()
        self.tmp.unlink(missing_ok=True)

    def _render(self, world: int) -> np.ndarray:
        sim = self.env.sim
        self.data.qpos[:] = _row(sim.qpos, world)
        self.data.qvel[:] = _row(sim.qvel, world)
        if self.model.nmocap:
            self.data.mocap_pos[:] = _row(sim.mocap_pos, world)
            self.data.mocap_quat[:] = _row(sim.mocap_quat, world)
        self.model.geom_size[:] = self.geom_size[world]
        mujoco.mj_forward(self.model, self.data)
        self.renderer.update_scene(self.data, camera=self.camera, scene_option=self.scene_option)
        return self.renderer.render()


def _row(x: torch.Tensor, world: int) -> np.ndarray:
    return x[world].detach().cpu().double().numpy()
