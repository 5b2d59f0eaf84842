"""A checkpoint's success in the batched simulator vs deployed on the ``sim`` robot (issue 6).

Target: deployed on the sim robot (the task's scene stepped in real time in its own process,
driven by the real-robot control loop through the safety layer with ``real/sim_panda.yaml``),
a lift checkpoint reaches within 5 points of its batched-sim success. Both are measured over the
same number of episodes, each with its Wilson 95% interval; the two use different scene seeds
(the sim robot samples its own resets), so the difference carries both intervals' noise.

Without ``--checkpoint``, collects ``--demos`` scripted lift demos and trains the default policy
(``robolearn-train``, ``edm_cpu``) for ``--train-steps`` first, in ``--work-dir``. Deployed
episodes run in real time (lift: up to 50 steps at 20 Hz, 2.5 s). Prints one JSON object.

    python scripts/deploy_vs_sim.py --checkpoint outputs/.../12-00-00_edm_cpu_lift --episodes 100
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from robolearn.checkpoint import load_policy, resolve_checkpoint
from robolearn.cli.deploy import DeploySettings, RobotSettings, run_deployment
from robolearn.cli.eval import _task_of
from robolearn.envs.vec_env import VecEnv
from robolearn.eval.evaluate import evaluate

TOLERANCE = 0.05  # deployed success within 5 points of the batched-sim success


def train_checkpoint(work_dir: Path, demos: int, steps: int) -> Path:
    """Scripted lift demos, then the default policy trained on them: the run dir."""
    dataset, run_dir = work_dir / "lift_expert.hdf5", work_dir / "train_lift"
    if not dataset.exists():
        subprocess.run(
            ["robolearn-collect", "task=lift", f"num_episodes={demos}", f"output={dataset}",
             "progress=false", f"hydra.run.dir={work_dir / 'collect'}"],
            check=True,
        )  # fmt: skip
    if not (run_dir / "last").exists():
        subprocess.run(
            ["robolearn-train", "task=lift", f"dataset={dataset}", f"train.steps={steps}",
             "logger=none", "train.progress=false", f"hydra.run.dir={run_dir}"],
            check=True,
        )  # fmt: skip
    return run_dir


def batched_sim(checkpoint: Path, episodes: int, num_envs: int, seed: int) -> dict[str, Any]:
    policy = load_policy(checkpoint)
    task, overrides = _task_of(checkpoint)
    env = VecEnv(
        task, num_envs, seed=seed, task_overrides={**overrides, "terminate_on_success": True}
    )
    try:
        result = evaluate(policy, env, episodes, seed=seed, progress=False)
    finally:
        env.close()
    return {
        "success_rate": result.success_rate,
        "successes": result.successes,
        "episodes": result.n_episodes,
        "ci95": list(result.ci95),
        "mean_length": result.mean_length,
    }


def deployed(checkpoint: Path, episodes: int, seed: int, out_dir: Path) -> dict[str, Any]:
    settings = DeploySettings(
        robot=RobotSettings(
            name="sim", driver="sim", kwargs={"seed": seed}, safety="sim_panda.yaml"
        ),
        num_episodes=episodes,
        keyboard_estop=False,
        seed=seed,
    )
    start = time.perf_counter()
    report = run_deployment(settings, checkpoint, out_dir)
    summaries = [r.summary() for r in report.episodes]
    return {
        "success_rate": report.successes / report.known if report.known else None,
        "successes": report.successes,
        "episodes": len(report.episodes),
        "ci95": list(report.ci95),
        "mean_length": sum(s["steps"] for s in summaries) / len(summaries),
        "faults": [s["fault"] for s in summaries if s["fault"]],
        "late_actions": sum(s["late_actions"] for s in summaries),
        "max_period_error_p99_pct": max(s["period_error_p99_pct"] for s in summaries),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "recording": str(report.recording),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="run or checkpoint dir (default: train)")
    parser.add_argument("--work-dir", type=Path, default=Path("outputs/deploy_vs_sim"))
    parser.add_argument("--demos", type=int, default=100)
    parser.add_argument("--train-steps", type=int, default=5000)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--num-envs", type=int, default=50, help="batched-sim worlds")
    parser.add_argument("--seed", type=int, default=100000)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    source = args.checkpoint or train_checkpoint(args.work_dir, args.demos, args.train_steps)
    checkpoint = resolve_checkpoint(source)
    sim = batched_sim(checkpoint, args.episodes, args.num_envs, args.seed)
    print(f"batched sim: {sim}", file=sys.stderr)
    robot = deployed(checkpoint, args.episodes, args.seed, args.work_dir / "deploy")
    difference = robot["success_rate"] - sim["success_rate"]
    report = {
        "benchmark": "deploy_vs_sim",
        "issue": 6,
        "checkpoint": str(checkpoint),
        "batched_sim": sim,
        "sim_robot": robot,
        "difference_points": round(100 * difference, 1),
        "target": {
            "target": f"sim-robot success within {100 * TOLERANCE:g} points of batched sim",
            "pass": abs(difference) <= TOLERANCE,
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    return 0


if __name__ == "__main__":  # the sim robot's process is spawned: this guard is required
    sys.exit(main())
