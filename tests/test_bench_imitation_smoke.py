"""Smoke test of ``scripts/bench/policy_latency.py``: it runs end to end and reports every figure.

Timings are not checked (shared machines are noisy); the point is that the benchmark that
``docs/benchmarks.md`` quotes still runs and still emits the keys the docs explain.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench" / "policy_latency.py"


def test_policy_latency_reports_all_figures(tmp_path: Path) -> None:
    json_out = tmp_path / "latency.json"
    command = [
        sys.executable,
        str(SCRIPT),
        "--demos",
        "0",
        "--rounds",
        "1",
        "--calls",
        "1",
        "--warmup",
        "1",
        "--json-out",
        str(json_out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert json.loads(json_out.read_text()) == report

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
