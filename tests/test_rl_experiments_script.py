"""The RL experiment script keeps what it finished when a later stage fails or is stopped."""

from __future__ import annotations

import json
import sys

import pytest


def test_the_report_is_written_after_each_stage(load_script, tmp_path, monkeypatch) -> None:
    script = load_script("rl_experiments")
    (tmp_path / "lift_10demos.hdf5").write_bytes(b"")  # present: not collected again
    bc = {"success_rate": 0.5, "successes": 1, "ci95": [0.1, 0.9], "n_episodes": 2}
    monkeypatch.setattr(script, "train_policy", lambda *a: (["robolearn.cli.train"], 1.0))
    monkeypatch.setattr(script, "evaluate", lambda *a: ({**bc, "env_steps": 0}, 2.0))

    def stopped(cmd, log):
        raise KeyboardInterrupt  # the RL run is stopped

    monkeypatch.setattr(script, "sh", stopped)
    argv = ["rl_experiments.py", "--out", str(tmp_path), "--runs", "ppo_bc_reg"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(KeyboardInterrupt):
        script.main()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["results"] == {"bc": {**bc, "env_steps": 0}}
    assert report["wall_s"] == {"bc_train": 1.0, "bc_eval": 2.0, "total": 3.0}
    assert not (tmp_path / "report.json.partial").exists()
