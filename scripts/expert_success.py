"""Success rate of every scripted expert with a Wilson 95% interval, as JSON.

python scripts/expert_success.py --num-envs 500 --seed 1
"""

from __future__ import annotations

import argparse
import json
import time

from robolearn.experts import EXPERTS
from robolearn.experts.measure import first_episode_success
from robolearn.utils.stats import wilson_interval


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="*", default=sorted(EXPERTS))
    parser.add_argument(
        "--num-envs", type=int, default=500, help="episodes per task (one per world)"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    results = {}
    for task in args.tasks:
        start = time.perf_counter()
        success = first_episode_success(task, args.num_envs, args.seed)
        n, k = len(success), int(success.sum())
        low, high = wilson_interval(k, n)
        results[task] = {
            "episodes": n,
            "successes": k,
            "success_rate": k / n,
            "ci95": [low, high],
            "seconds": round(time.perf_counter() - start, 1),
        }
    print(json.dumps({"seed": args.seed, "results": results}, indent=2))


if __name__ == "__main__":
    main()
