"""The curriculum experiment script's report: arms run with several seeds are pooled."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "curriculum_experiments.py"


def load_script():
    spec = importlib.util.spec_from_file_location("curriculum_experiments", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_table_pools_an_arms_episodes_over_its_seeds() -> None:
    script = load_script()
    results = [
        {
            "arm": "ads",
            "seed": 0,
            "success_rate": 0.075,
            "successes": 15,
            "ci95": (0.046, 0.12),
            "n_episodes": 200,
        },
        {
            "arm": "ads",
            "seed": 1,
            "success_rate": 0.1,
            "successes": 20,
            "ci95": (0.066, 0.15),
            "n_episodes": 200,
        },
        {
            "arm": "fixed_gamma",
            "seed": 0,
            "success_rate": 0.045,
            "successes": 9,
            "ci95": (0.024, 0.083),
            "n_episodes": 200,
        },
    ]
    rows = script.table(results).splitlines()
    pooled = [row for row in rows if "pooled" in row]
    # the pooled episodes' interval, and beside it the seeds' own spread
    assert pooled == ["| ads | 0,1 pooled | 0.0875 (35/400) | 0.06-0.12 | 0.075-0.1 |"]
    assert rows[-1] == "(600 evaluation episodes in all; Wilson 95% intervals)"
