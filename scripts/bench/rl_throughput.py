"""PPO training-loop throughput against bare ``VecEnv`` stepping with the same N (issue 4).

Measured in one run, on one machine, alternately (bare, loop, loop, bare, ...) ``--repeats`` times,
medians compared:

* **bare**: ``env.step`` with uniform random actions in [-1, 1] (drawn before timing, cycled), env
  steps/s. This is the ceiling of any loop around this env.
* **loop**: :meth:`PPORunner.iterate` — rollout (actor and critic forward passes, observation
  windows, the NaN/Inf guard, storage, time-out bootstraps), GAE and the PPO update (5 epochs x 4
  minibatches by default) — env steps/s over whole iterations, so the update's time counts.
  The actor is a fresh ``bc`` gaussian policy, as in a run from scratch, with the default network
  sizes (256x3 actor and critic); a pretrained BC actor has the same cost.
  The rollout runs with ``--threads`` torch threads, the update with ``--update-threads`` (1 as in
  ``rl.update_threads``; 0: all cores, which helps only when no other process wants them).
* **ratio** = loop / bare (target >= 0.7). ``update_fraction``: share of the loop's time in the
  update; ``collect_vs_bare``: the rollout's env steps/s over bare stepping (the cost of acting).

On a GPU (``--backend warp``) every bare step and every iteration ends with a device
synchronisation, so that the rates count finished work.

Prints one JSON object on stdout (progress to stderr); ``--json-out`` also writes it to a file.

    python scripts/bench/rl_throughput.py --task lift --num-envs 256
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import torch
from bench_common import emit_report, machine_info, synchronizer

from robolearn.envs import VecEnv
from robolearn.rl.build import make_actor, scratch_policy
from robolearn.rl.critic import Critic
from robolearn.rl.ppo import RLConfig
from robolearn.rl.runner import PPORunner


def bare_rate(env: VecEnv, seconds: float, bank: torch.Tensor) -> float:
    sync = synchronizer(env.device)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(bank[steps % len(bank)])
        sync()
        steps += 1
    return steps * env.num_envs / (time.perf_counter() - start)


def loop_rate(runner: PPORunner, iterations: int) -> tuple[float, float, float]:
    """Env steps/s over ``iterations`` whole iterations, the update's share of the time, and
    the rollout's own env steps/s."""
    steps0, start = runner.env_steps, time.perf_counter()
    collect = update = 0.0
    for _ in range(iterations):
        stats, _ = runner.iterate()
        collect += stats["collect_s"]
        update += stats["update_s"]
    synchronizer(runner.env.device)()
    elapsed = time.perf_counter() - start
    steps = runner.env_steps - steps0
    return steps / elapsed, update / elapsed, steps / collect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="lift")
    parser.add_argument("--num-envs", type=int, default=256)
    parser.add_argument("--num-steps", type=int, default=24, help="decisions per rollout")
    parser.add_argument("--iterations", type=int, default=3, help="loop iterations per sample")
    parser.add_argument("--seconds", type=float, default=3.0, help="bare stepping per sample")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256, 256])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--update-threads", type=int, default=1, help="torch threads in the update; 0: all cores"
    )
    parser.add_argument("--device", default=None, help="sim device (warp backend)")
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    env = VecEnv(args.task, args.num_envs, backend=args.backend, device=args.device, seed=0)
    bench_env = VecEnv(args.task, args.num_envs, backend=args.backend, device=args.device, seed=1)
    gen = torch.Generator(device=bench_env.device).manual_seed(0)
    bank = (
        torch.rand(64, args.num_envs, bench_env.action_dim, generator=gen, device=bench_env.device)
        * 2
        - 1
    )
    hidden = tuple(args.hidden)
    cfg = RLConfig(
        num_steps=args.num_steps, critic_hidden_dims=hidden, update_threads=args.update_threads
    )
    cfg = RLConfig(
        **{
            **cfg.__dict__,
            "scratch": type(cfg.scratch)(**{**cfg.scratch.__dict__, "hidden_dims": hidden}),
        }
    )
    actor = make_actor(scratch_policy(env, cfg), cfg).to(env.device)
    critic = Critic(env.spec, None, hidden).to(env.device)
    with TemporaryDirectory() as tmp:
        runner = PPORunner(
            env,
            actor,
            critic,
            cfg,
            total_env_steps=10**12,
            run_dir=Path(tmp),
            config={},
            progress=False,
        )
        runner.actor.eval()
        runner.reset_envs()
        runner.iterate()  # warm-up (allocations, first-call costs)
        bare_rate(bench_env, 0.5, bank)
        bare, loop, update_frac, collect = [], [], [], []
        for r in range(args.repeats):
            order = ("bare", "loop") if r % 2 == 0 else ("loop", "bare")
            for what in order:
                if what == "bare":
                    bare.append(bare_rate(bench_env, args.seconds, bank))
                else:
                    rate, frac, coll = loop_rate(runner, args.iterations)
                    loop.append(rate)
                    update_frac.append(frac)
                    collect.append(coll)
            print(
                f"repeat {r}: bare {bare[-1]:.0f} env steps/s, loop {loop[-1]:.0f}",
                file=sys.stderr,
            )
    b, lp = statistics.median(bare), statistics.median(loop)
    report = {
        "benchmark": "rl_throughput",
        "task": args.task,
        "num_envs": args.num_envs,
        "backend": args.backend,
        "device": str(env.device),
        "num_steps": args.num_steps,
        "num_epochs": cfg.num_epochs,
        "num_minibatches": cfg.num_minibatches,
        "threads": args.threads,
        "update_threads": args.update_threads or os.cpu_count(),
        "hidden_dims": list(hidden),
        "bare_env_steps_per_s": round(b, 1),
        "loop_env_steps_per_s": round(lp, 1),
        "ratio": round(lp / b, 3),
        "target": {"ratio": 0.7, "pass": lp / b >= 0.7},
        "collect_vs_bare": round(statistics.median(collect) / b, 3),
        "update_fraction": round(statistics.median(update_frac), 3),
        "samples": {"bare": [round(x, 1) for x in bare], "loop": [round(x, 1) for x in loop]},
        "machine": machine_info(),
    }
    emit_report(report, args.json_out)


if __name__ == "__main__":
    main()
