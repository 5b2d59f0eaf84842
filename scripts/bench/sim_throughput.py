"""Simulation throughput of the ``VecEnv`` against the raw MuJoCo batch-step ceiling (issue 2).

For each number of worlds N this measures, in one run and on one compiled scene model:

* **raw ceiling**: ``mujoco.batch.Batch(model, N, nthread=<all cores>, persistent=False)`` stepping
  ``substeps`` physics steps per call under constant controls (the ``home`` keyframe's). This is
  what MuJoCo's own threads can do with no Python, torch or task code in the loop; the ``cpu``
  backend steps the same kind of batch, so the ratio below is the cost of everything we add.
  With ``--backend warp`` the ceiling is a bare warp ``BatchedSim`` on the same device (its
  recorded step graph replayed under the same constant controls, no task code).
* **VecEnv**: ``env.step`` with uniform random actions in [-1, 1], counting env steps/s and
  physics steps/s (= env steps/s x substeps). Autoresets, rewards and observations are all inside
  the timed loop, as in training. The actions are drawn *before* timing (a bank on the env's
  device, cycled), so the random number generator is not measured.
* **ratio** = VecEnv physics steps/s / raw physics steps/s. To show where a gap comes from, the
  time spent inside the backend's ``sim.step`` during the env windows is also recorded:
  ``backend_vs_raw`` (physics on the env's own, moving worlds vs the resting raw ones) and
  ``env_overhead_fraction`` (task, torch and Python share of ``env.step``).

Both sides of the ratio are measured alternately (raw, env, env, raw, raw, env, ...) ``--repeats``
times and the medians are compared, so that a burst of load from other processes biases neither
side. Still, absolute figures are only as quiet as the machine: compare ratios within one run.

Memory is measured in a fresh subprocess: its RSS after importing everything the env needs
(interpreter + torch + mujoco + robolearn), then after building ``VecEnv(task, 1024)`` and taking a
few steps. The difference is the env's own memory, without the import baseline that any Python
process pays anyway. On a GPU it also reports the device memory the env took (free memory before
and after, so Warp's context and loaded kernels count too).

On a GPU every timed call ends with a device synchronisation, so that a rate counts finished work,
not launches queued behind the clock.

With ``--robosuite-python`` it also runs ``robosuite_lift_rate.py`` under that interpreter (robosuite
1.5.2 needs numpy<2 and MuJoCo 3.9, so it lives in its own venv) and measures our single-env
``VecEnv(lift, 1)`` the same way, for a like-for-like single-env comparison.

Prints one JSON object on stdout (progress goes to stderr); ``--json-out`` also writes it to a file.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mujoco
import psutil
import torch
from bench_common import emit_report, machine_info, synchronizer, usable_cores
from mujoco.batch import Batch

from robolearn.envs import VecEnv
from robolearn.sim.batched import make_sim

HERE = Path(__file__).resolve().parent
ROBOSUITE_SCRIPT = HERE / "robosuite_lift_rate.py"

#: Targets from issue 2.
RATIO_TARGET = 0.8
RATIO_TARGET_MIN_ENVS = 256
MEMORY_TARGET_MB = 200.0
MEMORY_TARGET_TASK = "lift"
MEMORY_TARGET_ENVS = 1024

#: Distinct random action batches to cycle through; enough that the policy looks random to the
#: physics, few enough that the bank is small (64 x 1024 x 8 floats = 2 MB).
ACTION_BANK = 64
#: Env steps taken in the memory probe before reading RSS: the first steps allocate the batch's
#: per-thread scratch data and torch's temporaries, which a training run pays too.
MEMORY_PROBE_STEPS = 10

MB = 1024.0 * 1024.0


def log(message: str) -> None:
    print(f"[sim_throughput] {message}", file=sys.stderr, flush=True)


# --- timing ------------------------------------------------------------------------------------
def timed_calls(fn: Callable[[], None], seconds: float, min_calls: int = 3) -> tuple[int, float]:
    """Call ``fn`` until ``seconds`` have passed (and at least ``min_calls`` times).

    Returns (calls, elapsed seconds). Checking the clock once per call costs nothing next to a
    batch step, and stopping on whole calls keeps every call fully timed.
    """
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= min_calls:
            return calls, elapsed


class RawBatch:
    """The ceiling: the same model and substeps in a bare ``mujoco.batch.Batch``, constant ctrl.

    ``stage`` is left at its default (no extra forward pass after the step): this is the cheapest
    way MuJoCo's threads can advance the worlds, the yardstick the backend is held to.
    """

    def __init__(self, model: mujoco.MjModel, num_worlds: int, substeps: int, threads: int):
        self.num_worlds, self.substeps = num_worlds, substeps
        self.batch = Batch(model, num_worlds, nthread=threads, persistent=False)
        # The home keyframe sets qpos and ctrl; ctrl then stays constant (the arm holds its pose,
        # objects rest on the table in contact, as at the start of an episode).
        self.batch.reset(keyframe=model.key("home").id if model.nkey else -1)

    @property
    def threads(self) -> int | None:
        return self.batch.nthread

    def step(self) -> None:
        self.batch.step(nstep=self.substeps)

    def physics_rate(self, seconds: float) -> float:
        """Physics steps per second (all worlds) over a window of ``seconds``."""
        calls, elapsed = timed_calls(self.step, seconds)
        return calls * self.num_worlds * self.substeps / elapsed


class RawWarp(RawBatch):
    """The warp ceiling: a bare warp ``BatchedSim`` at the home keyframe, constant ctrl."""

    def __init__(self, model: mujoco.MjModel, num_worlds: int, substeps: int, device: torch.device):
        self.num_worlds, self.substeps = num_worlds, substeps
        self.sim = make_sim(model, num_worlds, backend="warp", device=device)
        self.sim.reset()
        self.sync = synchronizer(self.sim.device)

    @property
    def threads(self) -> int | None:
        return None

    def step(self) -> None:
        self.sim.step(self.substeps)
        self.sync()


class EnvStepper:
    """``VecEnv.step`` with a pre-drawn bank of uniform random actions in [-1, 1].

    It also times the backend's ``sim.step`` inside each ``env.step`` (by wrapping the instance's
    method), which splits the env's cost into physics on the env's own worlds -- moving arms,
    contacts, the post-step kinematics pass -- and everything else (task, torch, Python, resets)
    without a separate measurement that could see a different load or a different state.
    """

    def __init__(self, env: VecEnv, seed: int = 0):
        self.env = env
        sync = self.sync = synchronizer(env.device)
        generator = torch.Generator(device=env.device).manual_seed(seed)
        bank = torch.rand(
            (ACTION_BANK, env.num_envs, env.action_dim), generator=generator, device=env.device
        )
        self._actions = itertools.cycle(list(bank * 2.0 - 1.0))
        self.sim_seconds = 0.0
        inner_step = env.sim.step

        def timed_sim_step(substeps: int = 1) -> Any:
            sync()  # the task's queued work is not the sim's
            start = time.perf_counter()
            result = inner_step(substeps)  # whatever the backend returns (a divergence mask)
            sync()
            self.sim_seconds += time.perf_counter() - start
            return result

        env.sim.step = timed_sim_step  # type: ignore[method-assign]

    def step(self) -> None:
        self.env.step(next(self._actions))
        self.sync()

    def rates(self, seconds: float) -> tuple[float, float]:
        """(env steps/s, backend physics steps/s within them) over a window of ``seconds``."""
        sim_before = self.sim_seconds
        calls, elapsed = timed_calls(self.step, seconds)
        env_steps = calls * self.env.num_envs
        return env_steps / elapsed, env_steps * self.env.substeps / (self.sim_seconds - sim_before)


def measure_num_envs(
    task: str,
    backend: str,
    device: str | None,
    num_envs: int,
    seconds: float,
    repeats: int,
    threads: int,
) -> dict[str, Any]:
    """Raw ceiling and VecEnv rates for one N, alternating the two ``repeats`` times each."""
    env = VecEnv(task, num_envs, backend=backend, device=device)
    substeps = env.substeps
    raw = (
        RawWarp(env.model, num_envs, substeps, env.device)
        if backend == "warp"
        else RawBatch(env.model, num_envs, substeps, threads)
    )
    stepper = EnvStepper(env)

    # Warm up both (first calls allocate scratch memory, fault in pages, start threads).
    warmup = max(0.1, 0.25 * seconds)
    raw.physics_rate(warmup)
    stepper.rates(warmup)

    raw_rates: list[float] = []
    env_rates: list[float] = []
    backend_rates: list[float] = []
    for rep in range(repeats):
        # ABBA order: whatever load drifts in during a run hits both sides alike.
        order = ("raw", "env") if rep % 2 == 0 else ("env", "raw")
        for which in order:
            if which == "raw":
                raw_rates.append(raw.physics_rate(seconds))
            else:
                env_rate, backend_rate = stepper.rates(seconds)
                env_rates.append(env_rate)
                backend_rates.append(backend_rate)

    raw_median = statistics.median(raw_rates)
    env_median = statistics.median(env_rates)
    env_physics = env_median * substeps
    backend_median = statistics.median(backend_rates)
    result = {
        "num_envs": num_envs,
        "substeps": substeps,
        "raw_threads": raw.threads,
        "env_sim_threads": getattr(env.sim, "num_threads", None),
        "raw_physics_steps_per_s": round(raw_median),
        "env_steps_per_s": round(env_median),
        "env_physics_steps_per_s": round(env_physics),
        "ratio": round(env_physics / raw_median, 3),
        # Each repeat's env/raw pair ran back to back; their ratios' median is less exposed to
        # load that changed between pairs (reported as a cross-check of ``ratio``).
        "ratio_paired_median": round(
            statistics.median(e * substeps / r for e, r in zip(env_rates, raw_rates, strict=True)),
            3,
        ),
        # Where the gap goes: ratio ~= (backend / raw) x (1 - overhead).
        "backend_physics_steps_per_s": round(backend_median),
        "backend_vs_raw": round(backend_median / raw_median, 3),
        "env_overhead_fraction": round(
            statistics.median(
                1.0 - e * substeps / b for e, b in zip(env_rates, backend_rates, strict=True)
            ),
            3,
        ),
        "raw_physics_steps_per_s_samples": [round(r) for r in raw_rates],
        "env_physics_steps_per_s_samples": [round(r * substeps) for r in env_rates],
    }
    env.close()
    del raw, stepper, env
    gc.collect()
    return result


def single_env_rate(task: str, backend: str, seconds: float, repeats: int) -> dict[str, Any]:
    """``VecEnv(task, 1)``, timed like robosuite's single env, for the like-for-like comparison."""
    env = VecEnv(task, 1, backend=backend)
    stepper = EnvStepper(env)
    stepper.rates(max(0.1, 0.25 * seconds))
    rate = statistics.median(stepper.rates(seconds)[0] for _ in range(repeats))
    control_freq = env.task.cfg.control_freq
    result = {
        "task": task,
        "num_envs": 1,
        "env_steps_per_s": round(rate, 1),
        "substeps": env.substeps,
        "timestep": env.model.opt.timestep,
        "control_freq": control_freq,
        "physics_steps_per_s": round(rate * env.substeps),
        "sim_seconds_per_s": round(rate / control_freq, 2),
    }
    env.close()
    return result


# --- memory ------------------------------------------------------------------------------------
def memory_probe(task: str, backend: str, device: str | None, num_envs: int) -> dict[str, Any]:
    """Runs inside the fresh subprocess: RSS before and after building and stepping the env."""
    importlib.import_module(f"robolearn.sim.{backend}")  # what the env would import lazily
    cuda = backend == "warp" and torch.cuda.is_available() and device in (None, "cuda")
    if cuda:
        torch.cuda.init()
        free_before = torch.cuda.mem_get_info()[0]

    process = psutil.Process()
    gc.collect()
    baseline = process.memory_info().rss
    env = VecEnv(task, num_envs, backend=backend, device=device)
    gc.collect()
    built = process.memory_info().rss
    stepper = EnvStepper(env)
    for _ in range(MEMORY_PROBE_STEPS):
        stepper.step()
    gc.collect()
    stepped = process.memory_info().rss
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    device_mb = {}
    if cuda:
        torch.cuda.synchronize()
        device_mb = {"device_mb": round((free_before - torch.cuda.mem_get_info()[0]) / MB, 1)}
    return {
        "task": task,
        "num_envs": num_envs,
        "baseline_rss_mb": round(baseline / MB, 1),
        "rss_after_build_mb": round(built / MB, 1),
        "rss_after_steps_mb": round(stepped / MB, 1),
        "env_mb_after_build": round((built - baseline) / MB, 1),
        "env_mb": round((stepped - baseline) / MB, 1),
        "env_peak_mb": round((peak - baseline) / MB, 1),
        **device_mb,
    }


def measure_memory(task: str, backend: str, device: str | None, num_envs: int) -> dict[str, Any]:
    """Run :func:`memory_probe` in a fresh interpreter so that nothing measured here leaks in."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--memory-probe",
        "--task",
        task,
        "--backend",
        backend,
        *(["--device", device] if device else []),
        "--memory-num-envs",
        str(num_envs),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"task": task, "num_envs": num_envs, "error": done.stderr.strip()[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])  # Warp logs module loads on stdout


# --- robosuite ---------------------------------------------------------------------------------
def run_robosuite(python: str, seconds: float, repeats: int) -> dict[str, Any]:
    """robosuite's Lift step rate from ``robosuite_lift_rate.py`` under another interpreter.

    Never raises: whatever goes wrong (no such interpreter, robosuite fails to import or run) is
    reported in the returned dict, so that the rest of the benchmark still stands.
    """
    command = [python, str(ROBOSUITE_SCRIPT), "--seconds", str(seconds), "--repeats", str(repeats)]
    env = {**os.environ, "MUJOCO_GL": "disable"}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, env=env, timeout=900
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"ok": False, "python": python, "error": f"{type(error).__name__}: {error}"}
    # The script prints its JSON as the last line of stdout even when it fails.
    for line in reversed(done.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return {"python": python, **json.loads(line)}
            except json.JSONDecodeError:
                break
    return {
        "ok": False,
        "python": python,
        "error": f"robosuite script exited {done.returncode} without a JSON result",
        "stderr_tail": done.stderr.strip()[-2000:],
    }


# --- report ------------------------------------------------------------------------------------
def targets(
    results: list[dict[str, Any]], memory: dict[str, Any], task: str, backend: str
) -> dict[str, Any]:
    """Issue 2's targets as pass/fail booleans (``None`` where this run did not measure them).

    They are stated for the ``cpu`` backend: on ``warp`` they are reported with ``applies`` false.
    """
    big = [r for r in results if r["num_envs"] >= RATIO_TARGET_MIN_ENVS]
    ratio_pass = all(r["ratio"] >= RATIO_TARGET for r in big) if big else None
    env_mb = memory.get("env_mb")
    memory_pass = None if env_mb is None else env_mb <= MEMORY_TARGET_MB
    return {
        "cpu_ratio": {
            "target": f"VecEnv physics steps/s >= {RATIO_TARGET} x raw ceiling at N >= "
            f"{RATIO_TARGET_MIN_ENVS}",
            "threshold": RATIO_TARGET,
            "ratios": {str(r["num_envs"]): r["ratio"] for r in big},
            "pass": ratio_pass,
            "applies": backend == "cpu",
        },
        "memory": {
            "target": f"env memory <= {MEMORY_TARGET_MB:g} MB for {MEMORY_TARGET_ENVS} worlds "
            f"of {MEMORY_TARGET_TASK}",
            "threshold_mb": MEMORY_TARGET_MB,
            "measured_mb": env_mb,
            "pass": memory_pass,
            # The target is stated for lift x 1024; other settings are measured but only indicative.
            "applies": backend == "cpu"
            and task == MEMORY_TARGET_TASK
            and memory.get("num_envs") == MEMORY_TARGET_ENVS,
        },
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="lift", help="registered task name (default: lift)")
    parser.add_argument(
        "--num-envs", type=int, nargs="+", default=[64, 256, 1024], help="worlds per measurement"
    )
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="seconds per single measurement (default: 1)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="alternating raw/env measurements per N; medians are reported (default: 5)",
    )
    parser.add_argument("--backend", default="cpu", choices=["cpu", "warp"], help="sim backend")
    parser.add_argument(
        "--device", default=None, help="warp backend's device (default: cuda when present)"
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: the sim's own threads do the parallel work)",
    )
    parser.add_argument(
        "--memory-num-envs",
        type=int,
        default=MEMORY_TARGET_ENVS,
        help="worlds for the memory probe",
    )
    parser.add_argument(
        "--robosuite-python",
        default=None,
        help="python of a venv with robosuite 1.5.2: also measure robosuite's Lift step rate",
    )
    parser.add_argument("--json-out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if any(n <= 0 for n in args.num_envs) or args.memory_num_envs <= 0:
        parser.error("numbers of envs must be positive")
    if args.seconds <= 0 or args.repeats <= 0:
        parser.error("--seconds and --repeats must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    if args.memory_probe:
        print(json.dumps(memory_probe(args.task, args.backend, args.device, args.memory_num_envs)))
        return 0

    threads = usable_cores()
    report: dict[str, Any] = {
        "benchmark": "sim_throughput",
        "issue": 2,
        "task": args.task,
        "backend": args.backend,
        "device": args.device,
        "machine": machine_info(),
        "settings": {
            "seconds_per_measurement": args.seconds,
            "repeats": args.repeats,
            "raw_threads": threads,
            "actions": f"uniform [-1, 1], a bank of {ACTION_BANK} batches drawn on the env's "
            "device before timing and cycled (RNG not timed)",
            "raw_ctrl": "home keyframe ctrl, constant; "
            + (
                "a bare warp BatchedSim, step(substeps) (a recorded graph), synchronised"
                if args.backend == "warp"
                else "mujoco.batch.Batch(persistent=False), step(nstep=substeps)"
            ),
            "order": "raw and env alternate (ABBA) per repeat; figures are medians",
        },
    }
    results = []
    for num_envs in args.num_envs:
        log(f"N={num_envs}: raw ceiling vs VecEnv, {args.repeats} x {args.seconds:g} s each")
        results.append(
            measure_num_envs(
                args.task,
                args.backend,
                args.device,
                num_envs,
                args.seconds,
                args.repeats,
                threads,
            )
        )
        log(f"N={num_envs}: {results[-1]}")
    report["results"] = results

    log(f"memory: fresh subprocess building VecEnv({args.task!r}, {args.memory_num_envs})")
    report["memory"] = measure_memory(args.task, args.backend, args.device, args.memory_num_envs)

    if args.robosuite_python:
        log(f"robosuite Lift under {args.robosuite_python}")
        report["robosuite"] = run_robosuite(args.robosuite_python, args.seconds, args.repeats)
        log("our single env: VecEnv('lift', 1)")
        try:
            ours = single_env_rate("lift", args.backend, args.seconds, args.repeats)
        except ValueError as error:  # lift not registered in this checkout
            ours = {"task": "lift", "error": str(error)}
        report["single_env"] = ours
        theirs = report["robosuite"]
        if theirs.get("ok") and "error" not in ours:
            # Both control at 20 Hz, but physics timesteps differ (robosuite 2 ms, ours 5 ms), so
            # simulated seconds per wall-clock second is the like-for-like figure.
            report["single_env_vs_robosuite"] = {
                "env_steps_per_s_ratio": round(
                    ours["env_steps_per_s"] / theirs["env_steps_per_s"], 2
                ),
                "sim_seconds_per_s_ratio": round(
                    ours["sim_seconds_per_s"] / theirs["sim_seconds_per_s"], 2
                ),
            }
    else:
        report["robosuite"] = None
        report["single_env"] = None

    report["targets"] = targets(results, report["memory"], args.task, args.backend)
    emit_report(report, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
