"""Sinkhorn for ADS's OT rewards: float64 matrix scaling vs the log-domain form.

One ADS rollout's rewards are ``demos`` batched Sinkhorn solves of ``(episodes, T, T)`` costs.
Both forms run the same iteration on the same costs, interleaved, ``--repeats`` times each; the
report gives seconds per rollout for each, their ratio, and the largest difference between the
plans. Random features stand in for observations. ``--cost cosine`` gives costs <= 2;
``--cost euclidean`` distances in units of the demo frames' median distance, with the episodes
``--offset`` of them away, as early in an ADS run: costs far past where ``exp(-C/eps)``
underflows, so that the scaling form absorbs its scalings into potentials as it goes.

    python scripts/bench/ot_reward.py --json-out outputs/bench/ot_reward.json
    python scripts/bench/ot_reward.py --cost euclidean --episodes 512 --demos 4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from bench_common import emit_report, machine_info

from robolearn.curricula.discount import median_distance
from robolearn.curricula.ot_reward import cosine_cost, sinkhorn_log, sinkhorn_scaling


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=128, help="agent episodes per rollout")
    p.add_argument("--length", type=int, default=60, help="frames per episode and per demo")
    p.add_argument("--demos", type=int, default=20)
    p.add_argument("--features", type=int, default=10)
    p.add_argument("--eps", type=float, default=0.01)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--cost", choices=("cosine", "euclidean"), default="cosine")
    p.add_argument("--offset", type=float, default=3.0, help="euclidean: episodes' shift")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json-out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    shape = (args.episodes, args.length, args.features)
    episodes = torch.randn(shape, generator=gen, dtype=torch.float64)
    demos = torch.randn((args.demos, *shape[1:]), generator=gen, dtype=torch.float64)
    if args.cost == "cosine":
        costs = [cosine_cost(episodes, d.expand(args.episodes, -1, -1)) for d in demos]
    else:
        unit = median_distance(demos.flatten(0, 1))
        episodes = episodes + args.offset * unit / args.features**0.5  # offset units away
        costs = [torch.cdist(episodes, d.expand(args.episodes, -1, -1)) / unit for d in demos]

    forms = {"scaling": sinkhorn_scaling, "log": sinkhorn_log}
    seconds: dict[str, list[float]] = {name: [] for name in forms}
    for _ in range(args.repeats):
        for name, solve in forms.items():
            start = time.perf_counter()
            for cost in costs:
                solve(cost, args.eps, args.iterations)
            seconds[name].append(time.perf_counter() - start)
    gap = 0.0
    for cost in costs[:2]:
        plans = [solve(cost, args.eps, args.iterations) for solve in forms.values()]
        gap = max(gap, float((plans[0] - plans[1]).abs().max()))
    best = {name: min(s) for name, s in seconds.items()}
    emit_report(
        {
            "benchmark": "ot_reward_sinkhorn",
            "config": vars(args) | {"json_out": str(args.json_out) if args.json_out else None},
            "seconds_per_rollout": {k: round(v, 4) for k, v in best.items()},
            "speedup_scaling_over_log": round(best["log"] / best["scaling"], 1),
            "max_plan_difference": gap,
            "max_cost_over_eps": round(max(float(c.max()) for c in costs) / args.eps, 1),
            "machine": machine_info(),
        },
        args.json_out,
    )


if __name__ == "__main__":
    main()
