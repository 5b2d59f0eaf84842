"""Smoke tests of the benchmark scripts: they run end to end and report every figure.

Timings are not checked (shared machines are noisy); the point is that the benchmarks that
``docs/benchmarks.md`` quotes still run and still emit the keys the docs explain.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench"


def run_bench(script: str, tmp_path: Path, *args: str) -> dict:
    """Run a benchmark script; its stdout and its --json-out file hold the same report."""
    json_out = tmp_path / "report.json"
    command = [sys.executable, str(BENCH / script), *args, "--json-out", str(json_out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert json.loads(json_out.read_text()) == report
    return report


def test_sim_throughput_reports_all_figures(tmp_path: Path) -> None:
    report = run_bench(
        "sim_throughput.py",
        tmp_path,
        "--task",
        "reach",
        "--num-envs",
        "8",
        "--seconds",
        "0.2",
        "--repeats",
        "1",
        "--memory-num-envs",
        "8",
    )

    assert report["task"] == "reach" and report["backend"] == "cpu"
    for key in ("cpu_model", "nproc", "torch", "mujoco", "python"):
        assert key in report["machine"]

    (result,) = report["results"]
    assert result["num_envs"] == 8
    for key in (
        "substeps",
        "raw_physics_steps_per_s",
        "env_steps_per_s",
        "env_physics_steps_per_s",
        "ratio",
    ):
        assert key in result
    # physics steps = env steps x substeps (both rounded to whole steps/s)
    expected_physics = result["env_steps_per_s"] * result["substeps"]
    assert abs(result["env_physics_steps_per_s"] - expected_physics) <= result["substeps"]

    memory = report["memory"]
    assert "error" not in memory, memory.get("error")
    assert memory["num_envs"] == 8
    for key in ("baseline_rss_mb", "rss_after_steps_mb", "env_mb"):
        assert key in memory

    targets = report["targets"]
    assert targets["cpu_ratio"]["pass"] is None  # no N >= 256 measured
    assert isinstance(targets["memory"]["pass"], bool)
    assert targets["memory"]["applies"] is False  # the target is stated for lift x 1024
    assert report["robosuite"] is None


def test_policy_latency_reports_all_figures(tmp_path: Path) -> None:
    report = run_bench(
        "policy_latency.py",
        tmp_path,
        "--demos",
        "0",
        "--rounds",
        "1",
        "--calls",
        "1",
        "--warmup",
        "1",
    )

    assert report["benchmark"] == "policy_latency" and report["task"] == "lift"
    for key in ("cpu_model", "nproc", "torch", "torch_threads", "loadavg_at_end"):
        assert key in report["machine"]
    assert report["settings"]["batch_size"] == 1
    assert report["settings"]["torch_threads"] == 1

    network = report["network"]
    assert network["denoiser"] == "unet" and network["identical_weights"] is True
    assert network["network_parameters"] > 0

    results = report["results"]
    for sampler, nfe in (("edm3", 3), ("ddim10", 10), ("ddpm100", 100)):
        assert results[sampler]["network_evaluations"] == nfe
        for key in ("median_ms", "p90_ms", "overhead_ms", "calls"):
            assert key in results[sampler]
        assert results[sampler]["median_ms"] > 0
    assert "median_ms" in results["network_call"]

    for ratio in ("ddpm100_over_edm3", "ddim10_over_edm3"):
        for key in ("ratio_of_medians", "median_of_round_ratios", "ideal_nfe_ratio"):
            assert key in report["ratios"][ratio]
    for target in ("edm3_vs_ddpm100", "edm3_vs_ddim10"):
        assert isinstance(report["targets"][target]["pass"], bool)
        assert "measured" in report["targets"][target]


def test_rl_throughput_reports_all_figures(tmp_path: Path) -> None:
    report = run_bench(
        "rl_throughput.py",
        tmp_path,
        *("--task", "reach", "--num-envs", "8", "--num-steps", "4", "--iterations", "1"),
        *("--seconds", "0.2", "--repeats", "1", "--hidden", "16"),
    )
    assert report["benchmark"] == "rl_throughput" and report["num_envs"] == 8
    for key in ("bare_env_steps_per_s", "loop_env_steps_per_s", "ratio", "update_fraction"):
        assert report[key] > 0
    assert "cpu_model" in report["machine"]
