"""Control-loop timing on the sim robot at 20 Hz, and per-step policy latency of EDM-3 vs
DDIM-10 vs DDPM-100 (issue 6).

The real-robot loop (``robolearn.real.control_loop.ControlLoop``: sleep-until-deadline
scheduler, synchronous planning, receding-horizon chunks, late actions dropped) drives the
``sim`` robot (the task's scene stepped in real time in its own process) through a
``SafetyLayer`` with every check off, once per sampler. The three policies share one denoiser
network with identical weights, built exactly as ``policy_latency.py`` builds them (its
``build_policies``; ``--denoiser mlp`` by default: the project's default ``edm_cpu`` policy), so
differences are the sampler's. Weights are untrained (a network's cost does not depend on them):
the arm moves, but the figures of interest are timings.

Reported per sampler: period error (step start minus its scheduled tick) p50/p99 as % of the
period (target: p99 <= 10%), step latency (observation read to action sent) p50/p99, policy
time per plan p50/p99, late actions (ready after their deadline, dropped) and skipped ticks.
Prints one JSON object (progress goes to stderr).

    python scripts/bench/control_loop_jitter.py --steps 200
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_common import emit_report, machine_info
from imitation_common import logger
from policy_latency import DENOISERS, SAMPLERS, build_policies, spec_and_normalizer

from robolearn.real.control_loop import ControlLoop, EpisodeResult, LoopConfig
from robolearn.real.drivers.sim import SimRobot
from robolearn.real.safety import SafetyConfig, SafetyLayer

#: Issue 6: p99 period error at most this share of the period.
TARGET_P99_PERIOD_ERROR = 0.10

log = logger("control_loop_jitter")


def run_loop(robot: SafetyLayer, policy, steps: int, episode_steps: int, rate: float) -> dict:
    """``steps`` control steps in episodes of ``episode_steps``; pooled timing statistics."""
    loop = ControlLoop(
        robot, policy, LoopConfig(max_steps=episode_steps, rate_hz=rate, stop_on_success=False)
    )
    results: list[EpisodeResult] = []
    while sum(r.steps for r in results) < steps:
        results.append(loop.run_episode())
        if results[-1].fault is not None:
            raise RuntimeError(f"fault during the benchmark: {results[-1].fault}")
    period = 1.0 / rate
    errors = np.concatenate([r.period_error_s for r in results]) / period * 100
    latency = np.concatenate([r.latency_s for r in results]) * 1e3
    plans = np.concatenate([r.policy_s for r in results]) * 1e3

    def q(values: np.ndarray, p: float) -> float:
        return round(float(np.percentile(values, p)), 3)

    return {
        "steps": int(sum(r.steps for r in results)),
        "episodes": len(results),
        "period_error_p50_pct": q(errors, 50),
        "period_error_p99_pct": q(errors, 99),
        "period_error_max_pct": q(errors, 100),
        "step_latency_p50_ms": q(latency, 50),
        "step_latency_p99_ms": q(latency, 99),
        "policy_per_plan_p50_ms": q(plans, 50),
        "policy_per_plan_p99_ms": q(plans, 99),
        "plans": len(plans),
        "late_actions": int(sum(r.late_actions for r in results)),
        "skipped_ticks": int(sum(r.skipped_ticks for r in results)),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="lift")
    parser.add_argument("--denoiser", default="mlp", choices=DENOISERS)
    parser.add_argument("--rate", type=float, default=20.0, help="control rate, Hz (default 20)")
    parser.add_argument("--steps", type=int, default=200, help="control steps per sampler")
    parser.add_argument("--episode-steps", type=int, default=50, help="steps per episode")
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.steps <= 0 or args.episode_steps <= 0 or args.rate <= 0:
        parser.error("--steps, --episode-steps and --rate must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    with tempfile.TemporaryDirectory(prefix="control_loop_jitter_") as tmp:
        spec, normalizer, _, _ = spec_and_normalizer(args.task, 0, args.seed, Path(tmp))
    policies, _, info = build_policies(args.denoiser, args.task, spec, normalizer, args.seed)
    report: dict[str, Any] = {
        "benchmark": "control_loop_jitter",
        "issue": 6,
        "task": args.task,
        "machine": machine_info(),
        "settings": {
            "rate_hz": args.rate,
            "steps_per_sampler": args.steps,
            "episode_steps": args.episode_steps,
            "torch_threads": args.torch_threads,
            "chunking": "receding",
            "late_action": "drop",
            "planning": "synchronous, inside the period",
            "robot": "sim (own process, real time)",
        },
        "network": info,
    }
    robot = SafetyLayer(SimRobot(args.task, seed=args.seed, rate_hz=args.rate), SafetyConfig())
    with robot:
        results = {}
        for name in args.samplers:
            log(f"{name}: {args.steps} steps at {args.rate:g} Hz")
            torch.manual_seed(args.seed)
            results[name] = run_loop(
                robot, policies[name], args.steps, args.episode_steps, args.rate
            )
            log(f"{name}: {results[name]}")
    report["results"] = results
    report["targets"] = {
        name: {
            "target": f"p99 period error <= {TARGET_P99_PERIOD_ERROR:.0%} of the period",
            "measured_pct": r["period_error_p99_pct"],
            "pass": r["period_error_p99_pct"] <= 100 * TARGET_P99_PERIOD_ERROR,
        }
        for name, r in results.items()
    }
    emit_report(report, args.json_out)
    return 0


if __name__ == "__main__":  # the sim robot's process is spawned: this guard is required
    sys.exit(main())
