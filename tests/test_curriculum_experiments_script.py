"""The curriculum experiment script's report: arms run with several seeds are pooled."""

from __future__ import annotations


def test_the_table_pools_an_arms_episodes_over_its_seeds(load_script) -> None:
    script = load_script("curriculum_experiments")
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


def test_each_run_keeps_its_result_beside_it(load_script, tmp_path, monkeypatch) -> None:
    """Written as the run ends, so that a later run's failure loses no finished figures."""
    import argparse
    import json

    script = load_script("curriculum_experiments")
    info = {"success_rate": 0.5, "successes": 1, "ci95": [0.1, 0.9], "n_episodes": 2}

    def fake_rl(module, overrides, log):
        log.parent.mkdir(parents=True)
        (log.parent / "eval_info.json").write_text(json.dumps(info))
        return 1.0

    monkeypatch.setattr(script, "sh", fake_rl)
    monkeypatch.setattr(script, "resolve_checkpoint", lambda run_dir: run_dir)
    monkeypatch.setattr(script, "load_training_state", lambda checkpoint: {})
    args = argparse.Namespace(
        out=tmp_path, experiment="ads", num_envs=2, budget=10, eval_episodes=2,
        curriculum_args=[], rl_args=[],
    )  # fmt: skip
    result = script.train("ads", 3, ["task=reach"], args)
    saved = json.loads((tmp_path / "ads" / "ads_s3" / "result.json").read_text())
    assert saved == result and saved["success_rate"] == 0.5 and saved["seed"] == 3
