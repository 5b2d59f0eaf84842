"""Issue 4's experiment: does RL fine-tuning lift a mediocre BC policy, and faster than RL alone?

On one task, from one small demo set, at equal env-step budgets:

* ``bc``            — BC alone (gaussian head, horizon 1, a few demos): the starting point;
* ``ppo_scratch``   — PPO from a fresh policy (``robolearn-rl`` without ``init``);
* ``ppo_bc_reg``    — PPO from the BC checkpoint with λ·KL(π‖π_BC) (conf/rl/ppo.yaml defaults);
* ``ppo_bc_noreg``  — the same without demonstration regularisation (``rl.demo_reg_coef=0``).

Each is evaluated by ``evaluate()`` over ``--eval-episodes`` episodes (success with a Wilson 95%
interval). From each RL run's TensorBoard curve of the training success rate (stochastic actions,
moving average over ``--smooth`` iterations) it also reports the env steps first needed to reach
each of ``--levels``: the "PPO from BC reaches a level in <= 1/3 of the steps from scratch" target.

Everything goes through the console scripts (robolearn-collect/-train/-eval/-rl), one subprocess
per stage, so the printed commands are the ones to rerun. Prints JSON, then a markdown table.

    python scripts/rl_experiments.py --out outputs/rl_exp --demos 10 --budget 5000000
    python scripts/rl_experiments.py --out /tmp/pilot --demos 10 --budget 300000 --eval-episodes 100
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RUNS = ("ppo_scratch", "ppo_bc_reg", "ppo_bc_noreg")


def sh(args: list[str], log: Path) -> float:
    """Run a console script (as ``python -m``), its output to ``log``; wall seconds."""
    print("$ " + " ".join(args), file=sys.stderr, flush=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run([sys.executable, "-m", *args], stdout=f, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(args)}; see {log}")
    return seconds


def eval_info(path: Path) -> dict[str, Any]:
    info = json.loads((path / "eval_info.json").read_text())
    return {
        "success_rate": info["success_rate"],
        "ci95": info["ci95"],
        "n_episodes": info["n_episodes"],
        "mean_return": round(info["mean_return"], 3),
    }


def steps_to_levels(run_dir: Path, levels: list[float], smooth: int) -> dict[str, int | None]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    if "rollout/success_rate" not in events.Tags()["scalars"]:
        return {str(level): None for level in levels}
    curve = [(e.step, e.value) for e in events.Scalars("rollout/success_rate")]
    out: dict[str, int | None] = {}
    for level in levels:
        out[str(level)] = None
        for i in range(len(curve)):
            window = [v for _, v in curve[max(0, i - smooth + 1) : i + 1]]
            if len(window) == min(smooth, i + 1) and sum(window) / len(window) >= level:
                out[str(level)] = curve[i][0]
                break
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--task", default="lift")
    p.add_argument("--demos", type=int, default=10)
    p.add_argument("--bc-steps", type=int, default=3000)
    p.add_argument("--bc-hidden", default="[256,256,256]")
    p.add_argument("--budget", type=int, default=5_000_000, help="env steps per RL run")
    p.add_argument("--num-envs", type=int, default=256)
    p.add_argument("--eval-episodes", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--levels", type=float, nargs="+", default=[0.5, 0.8, 0.9])
    p.add_argument("--smooth", type=int, default=5)
    p.add_argument("--runs", nargs="*", default=list(RUNS), choices=RUNS)
    p.add_argument("--rl-args", nargs="*", default=[], help="extra robolearn-rl overrides")
    args = p.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timing: dict[str, float] = {}
    commands: dict[str, str] = {}

    data = out / f"{args.task}_{args.demos}demos.hdf5"
    if not data.exists():
        from robolearn.data.collect import collect

        start = time.perf_counter()
        collect(
            args.task,
            args.demos,
            data,
            num_envs=min(args.demos, 50),
            seed=args.seed,
            progress=False,
        )
        timing["collect"] = time.perf_counter() - start
        commands["collect"] = (
            f"robolearn-collect task={args.task} num_episodes={args.demos} output={data}"
        )
    bc_dir = out / "bc"
    if not (bc_dir / "last").exists():
        cmd = [
            "robolearn.cli.train",
            f"task={args.task}",
            "policy=bc",
            "policy.head=gaussian",
            "policy.horizon=1",
            "policy.n_action_steps=1",
            "policy.n_obs_steps=1",
            f"policy.hidden_dims={args.bc_hidden}",
            f"train.steps={args.bc_steps}",
            f"dataset={data}",
            f"seed={args.seed}",
            "train.progress=false",
            "logger=none",
            f"hydra.run.dir={bc_dir}",
        ]
        commands["bc_train"] = "robolearn-train " + " ".join(cmd[1:])
        timing["bc_train"] = sh(cmd, out / "bc_train.log")
    eval_common = [f"num_episodes={args.eval_episodes}", "num_envs=50", "progress=false"]
    cmd = [
        "robolearn.cli.eval",
        f"checkpoint={bc_dir}",
        *eval_common,
        f"hydra.run.dir={out / 'bc_eval'}",
    ]
    timing["bc_eval"] = sh(cmd, out / "bc_eval.log")
    results: dict[str, Any] = {"bc": {**eval_info(out / "bc_eval"), "env_steps": 0}}

    for run in args.runs:
        run_dir = out / run
        cmd = [
            "robolearn.cli.rl",
            f"task={args.task}",
            f"num_envs={args.num_envs}",
            f"total_env_steps={args.budget}",
            f"seed={args.seed}",
            "progress=false",
            f"eval.num_episodes={args.eval_episodes}",
            f"hydra.run.dir={run_dir}",
            *args.rl_args,
        ]
        if run != "ppo_scratch":
            cmd.append(f"init={bc_dir}")
        if run == "ppo_bc_noreg":
            cmd.append("rl.demo_reg_coef=0")
        commands[run] = "robolearn-rl " + " ".join(cmd[1:])
        timing[run] = sh(cmd, out / f"{run}.log")
        results[run] = {
            **eval_info(run_dir),
            "env_steps_to_train_success": steps_to_levels(run_dir, args.levels, args.smooth),
        }

    report = {
        "task": args.task,
        "demos": args.demos,
        "bc_steps": args.bc_steps,
        "budget_env_steps": args.budget,
        "num_envs": args.num_envs,
        "eval_episodes": args.eval_episodes,
        "results": results,
        "wall_s": {k: round(v, 1) for k, v in timing.items()}
        | {"total": round(time.perf_counter() - t0, 1)},
        "commands": commands,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    levels = [str(level) for level in args.levels]
    print(
        f"\n| run | success ({args.eval_episodes} ep.) | 95% CI | "
        + " | ".join(f"env steps to {float(lv):.0%} (train)" for lv in levels)
        + " |"
    )
    print("|---|---|---|" + "---|" * len(levels))
    for name, r in results.items():
        reach = r.get("env_steps_to_train_success", {})
        cells = [f"{reach[lv]:,}" if reach.get(lv) else "—" for lv in levels]
        lo, hi = r["ci95"]
        print(
            f"| {name} | {r['success_rate']:.1%} | {lo:.1%}–{hi:.1%} | " + " | ".join(cells) + " |"
        )


if __name__ == "__main__":
    main()
