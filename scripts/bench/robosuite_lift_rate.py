"""robosuite's Lift ``env.step`` rate, for comparison with robolearn's single-env ``VecEnv``.

Runs under robosuite's own interpreter, not robolearn's: robosuite 1.5.2 pins numpy<2 (through
mink 0.0.5) and runs unchanged only on MuJoCo <= 3.9 (see DESIGN.md), so it lives in a separate
venv. This file therefore imports nothing from robolearn and needs only numpy and robosuite.

Setup (once)::

    python3 -m venv /work/venv-robosuite
    /work/venv-robosuite/bin/pip install "mujoco==3.9.*" "numpy<2" robosuite==1.5.2

What is measured: ``Lift`` with one Panda, robosuite's default controller for it (OSC pose arm +
gripper), no renderers, no camera observations; uniform random actions within ``action_spec``
drawn before timing. Only ``env.step`` calls are timed: robosuite's ``reset`` (by default a hard
reset that recompiles the MJCF) is timed separately and excluded, while robolearn's figure includes
its cheap same-step autoresets. Physics steps/s = env steps/s x substeps, with substeps computed as
robosuite's ``step`` does, ``int(control_timestep / model_timestep)``.

Prints one JSON object as the last line of stdout; on failure it has ``"ok": false`` and the
reason, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
import traceback
from typing import Any

# No renderer is used; keep MuJoCo from loading an OpenGL backend at import.
os.environ.setdefault("MUJOCO_GL", "disable")

WARMUP_STEPS = 20  # the first steps JIT-compile robosuite's numba kernels
ACTION_BANK = 256


def measure(seconds: float, repeats: int, seed: int) -> dict[str, Any]:
    import mujoco
    import numpy as np
    import robosuite

    started = time.perf_counter()
    env = robosuite.make(
        "Lift",
        robots="Panda",
        has_renderer=False,
        has_offscreen_renderer=False,
        use_camera_obs=False,
    )
    make_s = time.perf_counter() - started

    low, high = env.action_spec
    rng = np.random.default_rng(seed)
    actions = rng.uniform(low, high, size=(ACTION_BANK, len(low)))
    substeps = int(env.control_timestep / env.model_timestep)

    reset_times: list[float] = []

    def reset() -> None:
        t0 = time.perf_counter()
        env.reset()
        reset_times.append(time.perf_counter() - t0)

    reset()
    step_index = 0

    def window(duration: float) -> float:
        """Env steps per second of step time over ``duration`` seconds of stepping."""
        nonlocal step_index
        steps, step_time = 0, 0.0
        while step_time < duration:
            t0 = time.perf_counter()
            _, _, done, _ = env.step(actions[step_index % ACTION_BANK])
            step_time += time.perf_counter() - t0
            steps += 1
            step_index += 1
            if done:
                reset()
        return steps / step_time

    for _ in range(WARMUP_STEPS):
        env.step(actions[0])
    rates = [window(seconds) for _ in range(repeats)]
    rate = statistics.median(rates)
    controllers = {
        name: type(ctrl).__name__
        for name, ctrl in getattr(env.robots[0], "part_controllers", {}).items()
    }
    env.close()
    return {
        "ok": True,
        "env": "Lift",
        "robot": "Panda",
        "controllers": controllers,
        "env_steps_per_s": round(rate, 1),
        "env_steps_per_s_samples": [round(r, 1) for r in rates],
        "substeps": substeps,
        "model_timestep": env.model_timestep,
        "control_freq": env.control_freq,
        "physics_steps_per_s": round(rate * substeps),
        "sim_seconds_per_s": round(rate / env.control_freq, 2),
        "make_s": round(make_s, 2),
        "reset_s_mean": round(statistics.mean(reset_times), 3),
        "timing": "env.step only; resets excluded (timed separately in reset_s_mean)",
        "versions": {
            "robosuite": robosuite.__version__,
            "mujoco": mujoco.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds of stepping per window")
    parser.add_argument("--repeats", type=int, default=3, help="windows (the median is reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        # robosuite prints banners and warnings; keep stdout for the JSON result alone.
        with contextlib.redirect_stdout(sys.stderr):
            result = measure(args.seconds, args.repeats, args.seed)
    except Exception as error:  # report why robosuite cannot run, rather than a bare traceback
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(error).__name__}: {error}"}
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
