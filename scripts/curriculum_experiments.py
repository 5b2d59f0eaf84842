"""Issue 5's curriculum experiments (METHODS.md §5-7); every arm gets the same env-step budget.

* ``privileged`` — ``lift_flat`` from scratch, no demos, the parsimonious dense reward (reach +
  lift + success): PPO with the privileged-action curriculum vs PPO without. Training episodes do
  not end at success: every term of that reward is positive, so an episode that ends early loses
  what it would have earned and PPO learns to avoid the success. Success is measured on the plain
  task, i.e. at β = 0; the β each run ended at is reported beside it.
* ``ads`` — imitation from observation on ``pick_place`` (or ``stack``): OT rewards against
  scripted-expert episodes (``robolearn-collect``; the curriculum reads observations only), γ
  from ADS vs the same OT rewards with a fixed γ (``--fixed-gamma``, 0.99). Task success.
* ``alp_gmm`` — the ALP-GMM teacher vs uniform domain randomisation vs none (nominal parameters),
  trained on the box ``--ranges`` and evaluated on a held-out grid of ``--grid`` points per
  parameter over the same box (its corners included): grid mean success, and the mean over the
  hardest quartile (the grid points where the arms' mean success is lowest).

Training runs ``robolearn-rl`` (one subprocess per run; the commands are printed, logs in the
run dirs); evaluation is in-process on the plain task. Prints JSON then a markdown table (with
each arm's episodes pooled over its seeds) and writes ``<out>/<experiment>_s<seed>.json``
(``<experiment>_<arm>_s<seed>.json`` with ``--arms``, which runs some arms only, e.g. one per
core in two invocations; one ``_s<seed>`` per seed run). Each run's own figures are also in its run
dir (``result.json``) as soon as it ends, so a later run's failure loses none of them.

    python scripts/curriculum_experiments.py privileged --out outputs/curricula --budget 20000000
    python scripts/curriculum_experiments.py ads --out outputs/curricula --demos 20 --budget 5000000
    python scripts/curriculum_experiments.py alp_gmm --out outputs/curricula --task lift \\
        --init <bc run dir> --budget 3000000
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from robolearn.checkpoint import load_config, load_policy, load_training_state, resolve_checkpoint
from robolearn.envs.vec_env import VecEnv
from robolearn.eval.evaluate import evaluate
from robolearn.utils.files import write_text_atomic
from robolearn.utils.stats import wilson_interval


def sh(module: str, overrides: list[str], log: Path) -> float:
    """``python -m <module> <overrides>``, its output to ``log``; wall seconds."""
    print(f"$ python -m {module} " + " ".join(overrides), file=sys.stderr, flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        cmd = [sys.executable, "-m", module, *overrides]
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {module} {' '.join(overrides)}; see {log}")
    return time.perf_counter() - start


def train(arm: str, seed: int, overrides: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """One ``robolearn-rl`` run; its final evaluation (on the plain task) and curriculum state."""
    run_dir = args.out / args.experiment / f"{arm}_s{seed}"
    common = [
        f"num_envs={args.num_envs}",
        f"total_env_steps={args.budget}",
        f"seed={seed}",
        f"eval.num_episodes={args.eval_episodes}",
        f"hydra.run.dir={run_dir}",
        "progress=false",
    ]
    if any(o.startswith("curriculum=") for o in overrides):
        overrides = [*overrides, *args.curriculum_args]
    seconds = sh("robolearn.cli.rl", [*overrides, *common, *args.rl_args], run_dir / "rl.log")
    info = json.loads((run_dir / "eval_info.json").read_text())
    state = load_training_state(resolve_checkpoint(run_dir)).get("callback_0", {})
    result: dict[str, Any] = {
        "arm": arm,
        "seed": seed,
        "run_dir": str(run_dir),
        "train_s": round(seconds),
        "success_rate": info["success_rate"],
        "successes": info["successes"],
        "ci95": info["ci95"],
        "n_episodes": info["n_episodes"],
    }
    if "privileged" in state:
        result["final_beta"] = state["privileged"]["beta"]
    if "ads" in state:
        result["final_progress"] = state["ads"]["progress"]
    # Kept with the run as soon as it is known: a later run that fails loses the report, not this.
    write_text_atomic(run_dir / "result.json", json.dumps(result, indent=2))
    return result


# --- the experiments ------------------------------------------------------------------------------
def selected(arms: dict[str, list[str]], args: argparse.Namespace) -> dict[str, list[str]]:
    """The arms ``--arms`` names (all by default), so that arms can run side by side."""
    unknown = sorted(set(args.arms or ()) - set(arms))
    if unknown:
        raise SystemExit(f"--arms {unknown}: {args.experiment} has arms {sorted(arms)}")
    return {name: o for name, o in arms.items() if not args.arms or name in args.arms}


def privileged(args: argparse.Namespace) -> list[dict[str, Any]]:
    task = ["task=lift_flat", "task.reward_type=dense", "task.terminate_on_success=false"]
    arms = selected({"none": task, "privileged": [*task, "curriculum=privileged"]}, args)
    return [train(arm, seed, o, args) for seed in args.seeds for arm, o in arms.items()]


def ads(args: argparse.Namespace) -> list[dict[str, Any]]:
    demos = args.out / args.experiment / f"{args.task}_{args.demos}demos.hdf5"
    if not demos.is_file():
        collect = [
            f"task={args.task}",
            f"num_episodes={args.demos}",
            f"num_envs={min(args.demos, 64)}",
            f"output={demos}",
            "progress=false",
            *args.demo_args,
        ]
        sh("robolearn.cli.collect", collect, demos.with_suffix(".log"))
    keys = ",".join(args.obs_keys)
    base = [
        f"task={args.task}",
        f"task.episode_length={args.episode_length}",
        f"rl.num_steps={args.episode_length}",  # ADS rollouts are whole episodes
        "curriculum=ads",
        f"curriculum.ads.dataset={demos}",
        f"curriculum.ads.obs_keys=[{keys}]",
    ]
    fixed = [*base, f"curriculum.ads.fixed_gamma={args.fixed_gamma}"]
    arms = selected({"ads": base, "fixed_gamma": fixed}, args)
    return [train(arm, seed, o, args) for seed in args.seeds for arm, o in arms.items()]


def alp_gmm(args: argparse.Namespace) -> list[dict[str, Any]]:
    ranges = dict(parse_range(r) for r in args.ranges)
    box = [f"+task.domain.{name}=[{lo},{hi}]" for name, (lo, hi) in ranges.items()]
    task = [f"task={args.task}", *([f"init={args.init}"] if args.init else [])]
    arms = {"alp_gmm": [*task, *box, "curriculum=alp_gmm"], "uniform": [*task, *box], "none": task}
    arms = selected(arms, args)
    grid = list(
        itertools.product(
            *(torch.linspace(lo, hi, args.grid).tolist() for lo, hi in ranges.values())
        )
    )
    results = []
    for seed in args.seeds:
        for arm, overrides in arms.items():
            result = train(arm, seed, overrides, args)
            result["grid"] = grid_success(Path(result["run_dir"]), ranges, grid, args)
            results.append(result)
    summarise_grid(results, len(grid))
    return results


def grid_success(
    run_dir: Path, ranges: dict[str, tuple[float, float]], grid: list, args: argparse.Namespace
) -> list[float]:
    """Success rate at each grid point, on the run's task with the domain fixed to that point."""
    checkpoint = resolve_checkpoint(run_dir)
    task_cfg = dict(load_config(checkpoint)["task"])
    name = task_cfg.pop("name")
    task_cfg.pop("domain", None)
    policy = load_policy(checkpoint)
    rates = []
    for point in grid:
        domain = {p: (v, v) for p, v in zip(ranges, point, strict=True)}
        overrides = {**task_cfg, "terminate_on_success": True, "domain": domain}
        env = VecEnv(name, min(args.grid_episodes, 50), seed=100000, task_overrides=overrides)
        try:
            result = evaluate(policy, env, args.grid_episodes, seed=100000, progress=False)
        finally:
            env.close()
        rates.append(result.success_rate)
    return rates


def summarise_grid(results: list[dict[str, Any]], points: int) -> None:
    """Grid mean, and mean over the hardest quartile: the points every arm finds hardest."""
    difficulty = torch.tensor([r["grid"] for r in results]).mean(0)
    hardest = difficulty.argsort()[: max(1, points // 4)]
    for r in results:
        rates = torch.tensor(r["grid"])
        r["grid_mean"] = round(float(rates.mean()), 4)
        r["hardest_quartile_mean"] = round(float(rates[hardest].mean()), 4)


def parse_range(text: str) -> tuple[str, tuple[float, float]]:
    name, _, span = text.partition("=")
    lo, _, hi = span.partition(":")
    try:
        return name, (float(lo), float(hi))
    except ValueError:
        raise SystemExit(f"--ranges {text!r}: expected name=low:high") from None


EXPERIMENTS = {"privileged": privileged, "ads": ads, "alp_gmm": alp_gmm}


def table(results: list[dict[str, Any]]) -> str:
    rows_in = [*results, *pooled(results)]
    cols = [
        c
        for c in (
            "arm",
            "seed",
            "success_rate",
            "ci95",
            "seed_range",
            "final_beta",
            "final_progress",
            "grid_mean",
            "hardest_quartile_mean",
            "train_s",
        )
        if any(c in r for r in rows_in)
    ]
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows_in:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v[0]:.2f}-{v[1]:.2f}" if c == "ci95" else str(v))
        rows.append("| " + " | ".join(cells) + " |")
    n = sum(r["n_episodes"] for r in results)
    return "\n".join(rows) + f"\n\n({n} evaluation episodes in all; Wilson 95% intervals)"


def pooled(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each arm's evaluation episodes pooled over its seeds, for the arms run with several.

    The pooled Wilson interval covers the episodes' noise only, as if one policy had run them
    all; the spread between seeds (``seed_range``, the per-seed rates' min and max) is the other
    part of the uncertainty, and with a few seeds the larger one."""
    rows = []
    for arm in dict.fromkeys(r["arm"] for r in results):
        runs = [r for r in results if r["arm"] == arm]
        if len(runs) < 2:
            continue
        n = sum(r["n_episodes"] for r in runs)
        successes = sum(r["successes"] for r in runs)
        seeds = ",".join(str(r["seed"]) for r in runs)
        rows.append(
            {
                "arm": arm,
                "seed": f"{seeds} pooled",
                "success_rate": f"{successes / n:.4g} ({successes}/{n})",
                "ci95": wilson_interval(successes, n),
                "seed_range": "{:.3g}-{:.3g}".format(
                    min(r["success_rate"] for r in runs), max(r["success_rate"] for r in runs)
                ),
            }
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("experiment", choices=sorted(EXPERIMENTS))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--budget", type=int, default=5_000_000, help="env steps per run")
    p.add_argument("--num-envs", type=int, default=256)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--arms", nargs="+", default=None, help="run only these arms (default: all)")
    p.add_argument("--eval-episodes", type=int, default=200, help="final evaluation per run")
    p.add_argument("--rl-args", nargs="*", default=[], help="extra robolearn-rl overrides")
    p.add_argument(
        "--curriculum-args", nargs="*", default=[], help="extra overrides of the curriculum arms"
    )
    ads_args = p.add_argument_group("ads")
    ads_args.add_argument("--task", default=None, help="ads: pick_place; alp_gmm: lift")
    ads_args.add_argument("--demos", type=int, default=20)
    ads_args.add_argument(
        "--demo-args",
        nargs="*",
        default=[],
        help="extra robolearn-collect overrides, e.g. full-length demos: "
        "+task.terminate_on_success=false task.episode_length=60",
    )
    ads_args.add_argument("--episode-length", type=int, default=120)
    ads_args.add_argument("--obs-keys", nargs="+", default=["eef_pos", "gripper_qpos", "cube_pos"])
    ads_args.add_argument("--fixed-gamma", type=float, default=0.99)
    alp = p.add_argument_group("alp_gmm")
    alp.add_argument("--init", default=None, help="a bc checkpoint to fine-tune (all arms)")
    alp.add_argument(
        "--ranges",
        nargs="+",
        default=["object_friction=0.3:1.5", "object_mass_scale=0.5:3.0"],
        help="training box and grid: name=low:high per domain parameter",
    )
    alp.add_argument("--grid", type=int, default=4, help="grid points per parameter")
    alp.add_argument("--grid-episodes", type=int, default=50, help="evaluation episodes per point")
    args = p.parse_args()
    args.task = args.task or {"ads": "pick_place", "alp_gmm": "lift"}.get(args.experiment)
    args.out = args.out.resolve()
    results = EXPERIMENTS[args.experiment](args)
    # one file per invocation: arms and seeds run side by side must not overwrite each other
    seeds = [f"s{seed}" for seed in args.seeds]
    out = (args.out / "_".join([args.experiment, *(args.arms or []), *seeds])).with_suffix(".json")
    write_text_atomic(out, json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print(table(results))


if __name__ == "__main__":
    main()
