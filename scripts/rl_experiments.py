"""Issue 4's experiment: does RL fine-tuning lift a mediocre BC policy, and faster than RL alone?

On one task, from one small demo set, at equal env-step budgets:

* ``bc``            — BC alone (gaussian head, horizon 1, a few demos): the starting point;
* ``edm``           — EDM alone (``policy=edm_cpu``, same demos): DPPO's starting point;
* ``ppo_scratch``   — PPO from a fresh policy (``robolearn-rl`` without ``init``);
* ``ppo_scratch_dense`` — the same on the task's dense reward, its better chance from scratch;
* ``ppo_bc_reg``    — PPO from the BC checkpoint with λ·KL(π‖π_BC) (conf/rl/ppo.yaml defaults);
* ``ppo_bc_noreg``  — the same without demonstration regularisation (``rl.demo_reg_coef=0``);
* ``dppo_edm``      — DPPO from the EDM checkpoint (``rl=dppo``).

The other RL runs use conf/rl.yaml's reward: sparse success, episodes ending at success. Each policy
is evaluated over ``--eval-episodes`` episodes (success with a Wilson 95% interval). From each RL
run's TensorBoard curve of the training success rate (stochastic actions, mean over ``--smooth``
iterations) it also reports the env steps first needed to reach each of ``--levels``: the "PPO
from BC reaches a level in <= 1/3 of the steps from scratch" target. The curve starts once every
world has finished a whole episode (``num_envs x episode_length`` env steps): before that only
the short episodes have ended, and successes end episodes early, so the first points are biased
towards 100%.

Everything goes through the console scripts (robolearn-collect/-train/-eval/-rl), one subprocess
per stage, so the printed commands are the ones to rerun. Prints JSON, then a markdown table.
Results accumulate in ``<out>/report.json`` over invocations (a run given again replaces its
entry), so runs can be added one at a time; demos, BC and EDM are reused when present. The
report is rewritten after every stage, so a stopped invocation keeps what it finished.

    python scripts/rl_experiments.py --out outputs/rl_exp --demos 10 --budget 500000
    python scripts/rl_experiments.py --out /tmp/pilot --demos 10 --budget 300000 --runs ppo_bc_reg
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from robolearn.utils.files import write_text_atomic

RUNS = ("ppo_bc_reg", "ppo_bc_noreg", "ppo_scratch", "ppo_scratch_dense", "dppo_edm")
#: Task overrides of a run on the task's own dense reward (RL's default is sparse success).
DENSE = ("task.reward_type=dense", "task.terminate_on_success=false")


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


def steps_to_levels(
    run_dir: Path, levels: list[float], smooth: int, skip_steps: int
) -> dict[str, int | None]:
    """Env steps at which the mean of ``smooth`` consecutive points of the training success
    curve (those past ``skip_steps``) first reaches each level; ``None``: never."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    if "rollout/success_rate" not in events.Tags()["scalars"]:
        return {str(level): None for level in levels}
    curve = [(e.step, e.value) for e in events.Scalars("rollout/success_rate")]
    curve = [(step, v) for step, v in curve if step > skip_steps]
    out: dict[str, int | None] = {}
    for level in levels:
        out[str(level)] = None
        for i in range(smooth - 1, len(curve)):
            window = [v for _, v in curve[i - smooth + 1 : i + 1]]
            if sum(window) / smooth >= level:
                out[str(level)] = curve[i][0]
                break
    return out


def train_policy(
    name: str, policy_args: list[str], args: argparse.Namespace, data: Path, out: Path
) -> tuple[list[str], float | None]:
    """Train an imitation policy into ``out/name`` unless it exists; the command and seconds."""
    run_dir = out / name
    cmd = [
        "robolearn.cli.train",
        f"task={args.task}",
        *policy_args,
        f"dataset={data}",
        f"seed={args.seed}",
        "train.progress=false",
        "logger=none",
        f"hydra.run.dir={run_dir}",
    ]
    if (run_dir / "last").exists():
        return cmd, None
    return cmd, sh(cmd, out / f"{name}_train.log")


def evaluate(name: str, checkpoint: Path, args: argparse.Namespace, out: Path):
    """``robolearn-eval`` of ``checkpoint`` into ``out/<name>_eval``: its results and seconds."""
    cmd = [
        "robolearn.cli.eval",
        f"checkpoint={checkpoint}",
        f"num_episodes={args.eval_episodes}",
        "num_envs=50",
        "progress=false",
        f"hydra.run.dir={out / f'{name}_eval'}",
    ]
    seconds = sh(cmd, out / f"{name}_eval.log")
    return {**eval_info(out / f"{name}_eval"), "env_steps": 0}, seconds


def save_report(
    out: Path,
    args: argparse.Namespace,
    results: dict[str, Any],
    timing: dict[str, float],
    commands: dict[str, str],
) -> dict[str, Any]:
    """Write ``<out>/report.json`` with what has finished so far (temp file, then rename), so a
    stopped invocation keeps its finished runs; the report written."""
    report = {
        "task": args.task,
        "demos": args.demos,
        "bc_steps": args.bc_steps,
        "edm_steps": args.edm_steps,
        "budget_env_steps": args.budget,
        "num_envs": args.num_envs,
        "eval_episodes": args.eval_episodes,
        "results": results,
        "wall_s": {k: round(v, 1) for k, v in timing.items()}
        | {"total": round(sum(timing.values()), 1)},
        "commands": commands,
    }
    write_text_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--task", default="lift")
    p.add_argument(
        "--episode-length", type=int, default=None, help="for the curve; default: the task's"
    )
    p.add_argument("--demos", type=int, default=10)
    p.add_argument("--bc-steps", type=int, default=3000)
    p.add_argument("--bc-hidden", default="[256,256,256]")
    p.add_argument("--edm-steps", type=int, default=3000)
    p.add_argument("--budget", type=int, default=500_000, help="env steps per RL run")
    p.add_argument("--num-envs", type=int, default=256)
    p.add_argument("--eval-episodes", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--levels", type=float, nargs="+", default=[0.7, 0.8, 0.9])
    p.add_argument("--smooth", type=int, default=5)
    p.add_argument("--runs", nargs="*", default=list(RUNS), choices=RUNS)
    p.add_argument("--rl-args", nargs="*", default=[], help="extra robolearn-rl overrides")
    args = p.parse_args()
    from robolearn.tasks import make_task

    episode_length = args.episode_length or make_task(args.task).cfg.episode_length
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    previous = (
        json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    )
    timing: dict[str, float] = dict(previous.get("wall_s", {}))
    timing.pop("total", None)
    commands: dict[str, str] = dict(previous.get("commands", {}))

    data = out / f"{args.task}_{args.demos}demos.hdf5"
    commands["collect"] = (
        f"robolearn-collect task={args.task} num_episodes={args.demos} output={data}"
    )
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
    imitation = {
        "bc": [
            "policy=bc",
            "policy.head=gaussian",
            "policy.horizon=1",
            "policy.n_action_steps=1",
            "policy.n_obs_steps=1",
            f"policy.hidden_dims={args.bc_hidden}",
            f"train.steps={args.bc_steps}",
        ],
        "edm": ["policy=edm_cpu", f"train.steps={args.edm_steps}"],
    }
    if "dppo_edm" not in args.runs:
        del imitation["edm"]
    results: dict[str, Any] = dict(previous.get("results", {}))
    for name, policy_args in imitation.items():
        cmd, seconds = train_policy(name, policy_args, args, data, out)
        commands[f"{name}_train"] = "robolearn-train " + " ".join(cmd[1:])
        if seconds is not None:
            timing[f"{name}_train"] = seconds
        results[name], timing[f"{name}_eval"] = evaluate(name, out / name, args, out)
        save_report(out, args, results, timing, commands)

    init = {"ppo_bc_reg": "bc", "ppo_bc_noreg": "bc", "dppo_edm": "edm"}
    for run in args.runs:
        run_dir = out / run
        if run_dir.exists():  # its TensorBoard curve would mix two runs
            raise SystemExit(f"{run_dir} exists: remove it to run {run} again")
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
        if run in init:
            cmd.append(f"init={out / init[run]}")
        if run == "ppo_bc_noreg":
            cmd.append("rl.demo_reg_coef=0")
        if run == "ppo_scratch_dense":
            cmd += DENSE
        if run == "dppo_edm":
            cmd.insert(1, "rl=dppo")
        commands[run] = "robolearn-rl " + " ".join(cmd[1:])
        timing[run] = sh(cmd, out / f"{run}.log")
        skip = args.num_envs * episode_length
        results[run] = {
            **eval_info(run_dir),
            "env_steps": args.budget,
            "env_steps_to_train_success": steps_to_levels(run_dir, args.levels, args.smooth, skip),
        }
        save_report(out, args, results, timing, commands)

    report = save_report(out, args, results, timing, commands)
    print(json.dumps(report, indent=2))
    levels = [str(level) for level in args.levels]
    print(
        f"\n| run | env steps | success ({args.eval_episodes} ep.) | 95% CI | "
        + " | ".join(f"env steps to {float(lv):.0%} (train)" for lv in levels)
        + " | wall s |"
    )
    print("|---|---|---|---|" + "---|" * len(levels) + "---|")
    for name, r in results.items():
        reach = r.get("env_steps_to_train_success", {})
        cells = [f"{reach[lv]:,}" if reach.get(lv) else "—" for lv in levels]
        lo, hi = r["ci95"]
        wall = timing.get(name, timing.get(f"{name}_train"))
        wall_cell = "—" if wall is None else f"{wall:.0f}"
        print(
            f"| {name} | {r['env_steps']:,} | {r['success_rate']:.1%} | {lo:.1%}–{hi:.1%} | "
            + " | ".join(cells)
            + f" | {wall_cell} |"
        )


if __name__ == "__main__":
    main()
