"""Inference latency per action chunk at batch 1: EDM-3 vs DDIM-10 vs DDPM-100, same network (issue 3).

Three samplers, one denoiser network with identical weights:

* **EDM-3**: ``EDMPolicy`` (``conf/policy/edm.yaml``), 3 network evaluations on the exponential σ
  schedule with EDM preconditioning;
* **DDIM-10**: ``DiffusionPolicy`` (``conf/policy/diffusion.yaml``), diffusers' ``DDIMScheduler``
  with 10 steps;
* **DDPM-100**: the same ``DiffusionPolicy`` with ``sampler: ddpm``, the full 100-step chain.

The network is built once (``--denoiser unet`` by default, the configs' own sizes) and its
weights are copied into the three policies, so any difference in time per chunk is the sampler:
its number of network evaluations and its per-step arithmetic (diffusers' scheduler step, or EDM's
preconditioning). Weights are untrained: a network's cost does not depend on its weights, so an
untrained diffusion policy and an EDM policy with the same weights cost what trained ones cost.
``--denoiser mlp`` times the flat-chunk MLP of the CPU-sized configs: ``conf/policy/edm_cpu.yaml``
(the project's default policy) for EDM-3 and ``conf/policy/diffusion_cpu.yaml`` (the same network
and chunk length) for DDIM-10 / DDPM-100.

What is timed is ``policy.predict_action(obs)`` on a batch-1 observation window: encoding and
normalising the observations, the sampler loop, un-normalising and clipping, i.e. one re-plan of
the receding-horizon loop. The three are measured interleaved: each round times ``--calls``
consecutive chunks of each sampler, in an order that rotates from round to round, so that load
from other processes hits all three alike. Reported: median and p90 ms per chunk over all calls,
the ratios of medians, and the median of per-round ratios (a cross-check under changing load).
The cost of one network evaluation alone is measured the same way, to split each chunk into
network time and sampler overhead.

Observations and normaliser statistics come from ``--demos`` scripted demos of ``--task``
collected into a temporary directory (``--demos 0``: synthetic statistics around the env's reset
observation; timings do not depend on them). Prints one JSON object (progress goes to stderr).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_common import emit_report, machine_info
from imitation_common import (
    collect_demos,
    count_parameters,
    logger,
    run_config,
)
from torch import nn

from robolearn.data.dataset import DemoDataset, WindowConfig
from robolearn.data.normalizer import Normalizer
from robolearn.envs import VecEnv
from robolearn.policies import Policy
from robolearn.policies.diffusion import DiffusionPolicy
from robolearn.policies.edm import EDMPolicy
from robolearn.spec import ObsSpec

#: Targets from issue 3: EDM-3 at least this many times faster per chunk than ...
TARGET_VS_DDPM100 = 25.0
TARGET_VS_DDIM10 = 3.0
SAMPLERS = ("edm3", "ddim10", "ddpm100")
NFE = {"edm3": 3, "ddim10": 10, "ddpm100": 100}
DENOISERS = ("unet", "transformer", "mlp")
#: Policy configs (EDM, diffusion) each network is timed with.
CONFIGS = {
    "unet": ("edm", "diffusion"),
    "transformer": ("edm", "diffusion"),
    "mlp": ("edm_cpu", "diffusion_cpu"),
}

log = logger("policy_latency")


# --- building the policies -----------------------------------------------------------------------
def spec_and_normalizer(
    task: str, demos: int, seed: int, work_dir: Path
) -> tuple[ObsSpec, Normalizer, dict[str, torch.Tensor], dict[str, Any]]:
    """The task's spec, a fitted min-max normaliser, and one raw observation per policy key."""
    env = VecEnv(task, 1, seed=seed)
    try:
        spec = env.spec
        obs, _ = env.reset(seed=seed)
        first = {k: v.detach().cpu() for k, v in obs["policy"].items()}
    finally:
        env.close()
    if demos > 0:
        path = work_dir / f"{task}_demos.hdf5"
        info = collect_demos(task, demos, path, seed=seed, num_envs=min(demos, 10))
        stats = DemoDataset(path, None, WindowConfig(1, 1)).stats_arrays()
        source = {"kind": "demos", **info}
    else:
        rng = np.random.default_rng(seed)
        stats = {
            k: v.numpy() + rng.normal(0.0, 0.1, size=(256, *v.shape[1:])).astype(np.float32)
            for k, v in first.items()
        }
        stats["action"] = rng.uniform(
            spec.action.low, spec.action.high, size=(256, spec.action.dim)
        ).astype(np.float32)
        source = {"kind": "synthetic", "note": "normaliser fitted on noise around a reset obs"}
    return spec, Normalizer.fit(stats, mode="minmax"), first, source


def build_policies(
    denoiser: str, task: str, spec: ObsSpec, normalizer: Normalizer, seed: int
) -> tuple[dict[str, Policy], nn.Module, dict[str, Any]]:
    """EDM-3, DDIM-10 and DDPM-100 policies sharing one network's weights (copied, and checked
    equal), from the project's policy configs with only the sampler settings changed."""
    dummy = "unused.hdf5"  # the configs are composed, not run: no dataset is read
    # mlp: the CPU-sized configs (the project's default policy, edm_cpu.yaml, and its diffusion
    # counterpart); the diffusion policies get EDM's window and chunk in any case.
    edm_name, diffusion_name = CONFIGS[denoiser]
    edm_cfg = run_config(edm_name, task, dummy, [f"policy.denoiser={denoiser}"]).policy_cfg
    diff_cfg = run_config(diffusion_name, task, dummy, [f"policy.denoiser={denoiser}"]).policy_cfg
    edm_cfg = replace(edm_cfg, num_steps=NFE["edm3"])
    diff_cfg = replace(
        diff_cfg,
        n_obs_steps=edm_cfg.n_obs_steps,
        horizon=edm_cfg.horizon,
        n_action_steps=edm_cfg.n_action_steps,
    )
    ddim_cfg = replace(diff_cfg, sampler="ddim", num_inference_steps=NFE["ddim10"])
    ddpm_cfg = replace(diff_cfg, sampler="ddpm")
    if ddpm_cfg.num_train_timesteps != NFE["ddpm100"]:
        raise ValueError(f"diffusion config has {ddpm_cfg.num_train_timesteps} DDPM steps, not 100")

    torch.manual_seed(seed)
    edm = EDMPolicy(edm_cfg, spec, normalizer)
    ddim = DiffusionPolicy(ddim_cfg, spec, normalizer)
    ddpm = DiffusionPolicy(ddpm_cfg, spec, normalizer)
    ddim.denoiser.load_state_dict(edm.model.state_dict())
    ddpm.denoiser.load_state_dict(edm.model.state_dict())
    # The encoders hold no weights of their own for low-dim keys, but copy whatever they hold.
    ddim.encoder.load_state_dict(edm.encoder.state_dict())
    ddpm.encoder.load_state_dict(edm.encoder.state_dict())
    policies: dict[str, Policy] = {"edm3": edm, "ddim10": ddim, "ddpm100": ddpm}
    reference = edm.model.state_dict()
    for name in ("ddim10", "ddpm100"):
        state = policies[name].denoiser.state_dict()
        if state.keys() != reference.keys() or not all(
            torch.equal(state[k], reference[k]) for k in reference
        ):
            raise AssertionError(f"{name}: network weights differ from EDM's")
    for policy in policies.values():
        policy.eval()
    info = {
        "denoiser": denoiser,
        "edm_config": edm_name,
        "diffusion_config": diffusion_name,
        "network_class": type(edm.model).__name__,
        "network_parameters": count_parameters(edm.model),
        "identical_weights": True,
        "horizon": edm_cfg.horizon,
        "n_obs_steps": edm_cfg.n_obs_steps,
        "action_dim": spec.action.dim,
        "obs_feature_dim": edm.obs_feature_dim,
        "edm": {
            "num_steps": edm_cfg.num_steps,
            "sigma_max": edm_cfg.sigma_max,
            "sigma_min": edm_cfg.sigma_min,
        },
        "ddim": {"num_inference_steps": ddim_cfg.num_inference_steps},
        "ddpm": {"num_train_timesteps": ddpm_cfg.num_train_timesteps},
    }
    return policies, edm.model, info


# --- timing --------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_calls(fn, calls: int) -> list[float]:
    """Milliseconds of each of ``calls`` consecutive calls of ``fn``."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def measure(
    policies: dict[str, Policy],
    network: nn.Module,
    obs_window: dict[str, torch.Tensor],
    rounds: int,
    calls: int,
    warmup: int,
) -> dict[str, Any]:
    """Interleaved per-chunk timings of every sampler, and of one network evaluation."""
    with torch.inference_mode():
        edm: EDMPolicy = policies["edm3"]  # type: ignore[assignment]
        cond = edm.encode(obs_window)
        x = torch.randn(1, edm.cfg.horizon, edm.action_dim)
        level = torch.zeros(1)

        def network_call() -> None:
            network(x, level, cond)

        fns = {name: (lambda p=p: p.predict_action(obs_window)) for name, p in policies.items()}
        fns["network"] = network_call
        order = [*SAMPLERS, "network"]
        for fn in fns.values():  # warm-up: allocator, lazy inits, first-call dispatch
            time_calls(fn, warmup)
        samples: dict[str, list[float]] = {name: [] for name in order}
        per_round: dict[str, list[float]] = {name: [] for name in order}
        for r in range(rounds):
            shift = r % len(order)
            for name in order[shift:] + order[:shift]:
                times = time_calls(fns[name], calls)
                samples[name] += times
                per_round[name].append(statistics.median(times))
    return {"samples": samples, "per_round": per_round}


def summarise(timings: dict[str, Any], calls: int) -> dict[str, Any]:
    samples, per_round = timings["samples"], timings["per_round"]
    network_ms = statistics.median(samples["network"])
    results: dict[str, Any] = {}
    for name in SAMPLERS:
        median = statistics.median(samples[name])
        results[name] = {
            "network_evaluations": NFE[name],
            "median_ms": round(median, 3),
            "p90_ms": round(percentile(samples[name], 90), 3),
            "min_ms": round(min(samples[name]), 3),
            "calls": len(samples[name]),
            # chunk time beyond NFE x one network evaluation: the sampler's own arithmetic,
            # encoding and normalisation (negative values only mean noise)
            "overhead_ms": round(median - NFE[name] * network_ms, 3),
            "chunks_per_s": round(1000.0 / median, 1),
        }
    results["network_call"] = {
        "median_ms": round(network_ms, 3),
        "p90_ms": round(percentile(samples["network"], 90), 3),
        "calls": len(samples["network"]),
    }

    def ratio(slow: str, fast: str) -> dict[str, float]:
        paired = [s / f for s, f in zip(per_round[slow], per_round[fast], strict=True)]
        return {
            "ratio_of_medians": round(results[slow]["median_ms"] / results[fast]["median_ms"], 2),
            "median_of_round_ratios": round(statistics.median(paired), 2),
            "ideal_nfe_ratio": round(NFE[slow] / NFE[fast], 2),
        }

    return {
        "results": results,
        "ratios": {
            "ddpm100_over_edm3": ratio("ddpm100", "edm3"),
            "ddim10_over_edm3": ratio("ddim10", "edm3"),
        },
        "per_round_median_ms": {k: [round(v, 3) for v in per_round[k]] for k in per_round},
        "calls_per_round": calls,
    }


def targets(ratios: dict[str, Any]) -> dict[str, Any]:
    vs_ddpm = ratios["ddpm100_over_edm3"]["ratio_of_medians"]
    vs_ddim = ratios["ddim10_over_edm3"]["ratio_of_medians"]
    return {
        "edm3_vs_ddpm100": {
            "target": f"EDM-3 >= {TARGET_VS_DDPM100:g}x faster per chunk than DDPM-100",
            "threshold": TARGET_VS_DDPM100,
            "measured": vs_ddpm,
            "pass": vs_ddpm >= TARGET_VS_DDPM100,
        },
        "edm3_vs_ddim10": {
            "target": f"EDM-3 >= {TARGET_VS_DDIM10:g}x faster per chunk than DDIM-10",
            "threshold": TARGET_VS_DDIM10,
            "measured": vs_ddim,
            "pass": vs_ddim >= TARGET_VS_DDIM10,
        },
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="lift", help="registered task name (default: lift)")
    parser.add_argument(
        "--denoiser",
        default="unet",
        choices=DENOISERS,
        help="the shared network (default: unet; mlp: edm_cpu.yaml vs diffusion_cpu.yaml)",
    )
    parser.add_argument(
        "--demos",
        type=int,
        default=10,
        help="scripted demos for the normaliser and spec (default: 10; 0: synthetic statistics)",
    )
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds (default: 20)")
    parser.add_argument(
        "--calls", type=int, default=5, help="consecutive chunks per sampler per round (default 5)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per sampler first")
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="torch intra-op threads (default: 1)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.rounds <= 0 or args.calls <= 0 or args.warmup < 0 or args.demos < 0:
        parser.error("--rounds and --calls must be positive, --warmup and --demos >= 0")
    if args.torch_threads <= 0:
        parser.error("--torch-threads must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    report: dict[str, Any] = {
        "benchmark": "policy_latency",
        "issue": 3,
        "task": args.task,
        "machine": machine_info(),
        "settings": {
            "batch_size": 1,
            "torch_threads": args.torch_threads,
            "rounds": args.rounds,
            "calls_per_round": args.calls,
            "warmup_calls": args.warmup,
            "timed": "policy.predict_action(obs window) under torch.inference_mode: encode, "
            "normalise, sampler loop, unnormalise, clip",
            "order": "samplers (and a lone network call) interleaved, order rotated per round",
            "weights": "untrained, identical in all three policies; per-call cost does not "
            "depend on weight values, so trained checkpoints cost the same",
        },
    }
    with tempfile.TemporaryDirectory(prefix="policy_latency_") as tmp:
        log(f"spec and normaliser for {args.task} ({args.demos} demos)")
        spec, normalizer, first_obs, source = spec_and_normalizer(
            args.task, args.demos, args.seed, Path(tmp)
        )
    report["data"] = source
    policies, network, info = build_policies(args.denoiser, args.task, spec, normalizer, args.seed)
    report["network"] = info
    n_obs = info["n_obs_steps"]
    obs_window = {
        k: first_obs[k].unsqueeze(1).repeat_interleave(n_obs, 1) for k in policies["edm3"].obs_keys
    }
    log(
        f"{args.denoiser} ({info['network_parameters']:,} parameters): {args.rounds} rounds x "
        f"{args.calls} chunks per sampler"
    )
    timings = measure(policies, network, obs_window, args.rounds, args.calls, args.warmup)
    summary = summarise(timings, args.calls)
    report.update(summary)
    report["targets"] = targets(summary["ratios"])
    emit_report(report, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
