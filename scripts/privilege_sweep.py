"""Success of a privileged-action run's trained policy at several privilege levels β.

Where a policy stops sufficing as β falls (robolearn/curricula/privileged_sweep.py): evaluates
the run's checkpoint (or its last one) on its task with the privileged env at each ``--betas``
level, the same env seed at each. Prints JSON, then a markdown table with Wilson 95% intervals;
``--out`` also writes the JSON there (atomically).

    python scripts/privilege_sweep.py outputs/<run dir> --betas 1 0.5 0.4 0.3 0.2 0 --episodes 100
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from robolearn.checkpoint import resolve_checkpoint
from robolearn.curricula.privileged_sweep import success_by_beta
from robolearn.eval.evaluate import EvalResult
from robolearn.utils.files import write_text_atomic

#: The figures of each level's :class:`EvalResult` that the report keeps (not the per-episode ones).
SUMMARY_KEYS = ("success_rate", "successes", "n_episodes", "ci95", "mean_return", "mean_length")


def report(checkpoint: Path, results: dict[float, EvalResult]) -> dict[str, Any]:
    levels = []
    for beta, result in results.items():
        figures = result.to_dict()
        levels.append({"beta": beta, **{key: figures[key] for key in SUMMARY_KEYS}})
    return {"checkpoint": str(checkpoint), "levels": levels}


def table(summary: dict[str, Any]) -> str:
    rows = [
        "| β | success | Wilson 95% CI | mean return | mean length |",
        "|---:|---:|---|---:|---:|",
    ]
    for level in summary["levels"]:
        low, high = level["ci95"]
        rows.append(
            f"| {level['beta']:g} | {level['success_rate']:.1%} "
            f"({level['successes']}/{level['n_episodes']}) | {low:.1%}–{high:.1%} "
            f"| {level['mean_return']:.1f} | {level['mean_length']:.1f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path, help="a robolearn-rl run dir or checkpoint dir")
    p.add_argument("--betas", type=float, nargs="+", default=[1.0, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    p.add_argument("--episodes", type=int, default=100, help="evaluation episodes per level")
    p.add_argument("--num-envs", type=int, default=50)
    p.add_argument("--seed", type=int, default=100000)
    p.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    try:
        checkpoint = resolve_checkpoint(args.checkpoint)
        results = success_by_beta(
            checkpoint,
            args.betas,
            args.episodes,
            num_envs=args.num_envs,
            seed=args.seed,
            progress=args.progress,
        )
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"privilege_sweep: {e}") from None
    summary = report(checkpoint, results)
    text = json.dumps(summary, indent=2)
    print(text)
    print(table(summary))
    if args.out is not None:
        write_text_atomic(args.out, text)


if __name__ == "__main__":
    main()
