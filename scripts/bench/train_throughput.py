"""Training throughput of each policy in samples/s, on the same demos (issue 3).

Every policy is built exactly as ``robolearn-train policy=<name> task=<task> dataset=<demos>``
builds it (``conf/train.yaml`` + ``conf/policy/<name>.yaml``: network, batch size, optimizer,
LR schedule, gradient clipping, EMA where the policy has it on by default), and then driven one
training step at a time by the project's ``Trainer``: a step is fetching its batch, the loss,
backward, clipping, the optimizer and scheduler steps and the EMA update, i.e. all a real run
does per step except logging, validation and checkpoints (periodic, and not the policy's cost).

After ``--warmup`` untimed steps each, the policies are timed in interleaved rounds of
``--steps`` steps (order rotating per round), so that load from other processes hits all of them
alike; the median round gives samples/s = batch size x steps / seconds. Policies are named by
their config-group option: ``bc``, ``diffusion`` (U-Net), ``edm`` (the same U-Net),
``edm_cpu`` (EDM with the MLP denoiser: the project's default policy).

The demos are ``--demos`` scripted demos of ``--task`` collected into a temporary directory
(or ``--dataset``). Prints one JSON object (progress goes to stderr).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_common import emit_report, machine_info
from imitation_common import (
    POLICY_CONFIGS,
    collect_demos,
    count_parameters,
    logger,
    prepare_training,
)

from robolearn.cli.train import TrainJob
from robolearn.policies.trainer import StepBatches, _batches

log = logger("train_throughput")


class Stepper:
    """One policy's trainer, stepped by hand with the batches its ``fit`` would use."""

    def __init__(self, name: str, job: TrainJob):
        self.name, self.job = name, job
        trainer = job.trainer
        self.trainer = trainer
        cfg = trainer.cfg
        sampler = StepBatches(len(trainer.train_set), cfg.batch_size, trainer.seed, 0)
        self.batches = _batches(trainer.train_set, sampler, cfg.num_workers)
        self.batch_size = cfg.batch_size
        self.steps_done = 0

    def run(self, steps: int) -> float:
        """Seconds for ``steps`` training steps (batch fetch included)."""
        start = time.perf_counter()
        for _ in range(steps):
            self.trainer._train_step(next(self.batches))
            self.trainer.step += 1
        self.steps_done += steps
        return time.perf_counter() - start

    def info(self) -> dict[str, Any]:
        trainer, policy = self.trainer, self.trainer.policy
        network = getattr(policy.cfg, "denoiser", None)
        return {
            "policy": policy.name,
            "network": network or "mlp (bc head)",
            "parameters": count_parameters(policy),
            "batch_size": self.batch_size,
            "ema": trainer.ema is not None,
            "grad_clip": trainer.cfg.grad_clip,
            "train_samples": len(trainer.train_set),
        }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="lift", help="registered task name (default: lift)")
    parser.add_argument(
        "--policies",
        nargs="+",
        default=["bc", "diffusion", "edm", "edm_cpu"],
        choices=POLICY_CONFIGS,
        help="config-group options of conf/policy (default: all four)",
    )
    parser.add_argument("--demos", type=int, default=100, help="scripted demos (default: 100)")
    parser.add_argument("--dataset", type=Path, default=None, help="use these demos instead")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: 3)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="override train.batch_size (default: the train config's, 256)",
    )
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="torch threads (default 1, as train.yaml)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if min(args.demos, args.steps, args.rounds) <= 0 or args.warmup < 0:
        parser.error("--demos, --steps and --rounds must be positive, --warmup >= 0")
    if args.batch_size is not None and args.batch_size <= 0:
        parser.error("--batch-size must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report: dict[str, Any] = {
        "benchmark": "train_throughput",
        "issue": 3,
        "task": args.task,
        "settings": {
            "steps_per_round": args.steps,
            "rounds": args.rounds,
            "warmup_steps": args.warmup,
            "torch_threads": args.torch_threads,
            "timed": "Trainer._train_step (loss, backward, grad clip, AdamW, LR schedule, EMA) "
            "plus fetching its batch; no logging, validation or checkpoints",
            "order": "policies interleaved per round, order rotated; figures are median rounds",
        },
    }
    overrides = [f"threads={args.torch_threads}", f"seed={args.seed}"]
    if args.batch_size is not None:
        overrides.append(f"train.batch_size={args.batch_size}")
    with tempfile.TemporaryDirectory(prefix="train_throughput_") as tmp:
        work = Path(tmp)
        if args.dataset is not None:
            dataset = args.dataset.resolve()
            report["data"] = {"path": str(dataset)}
        else:
            dataset = work / f"{args.task}_demos.hdf5"
            log(f"collecting {args.demos} {args.task} demos")
            report["data"] = collect_demos(args.task, args.demos, dataset, seed=args.seed)
        steppers = {}
        for name in args.policies:
            job = prepare_training(name, args.task, dataset, work / name, overrides)
            steppers[name] = Stepper(name, job)
        torch.set_num_threads(args.torch_threads)
        report["machine"] = machine_info()
        for stepper in steppers.values():
            stepper.run(args.warmup)
        seconds: dict[str, list[float]] = {name: [] for name in steppers}
        names = list(steppers)
        for r in range(args.rounds):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                seconds[name].append(steppers[name].run(args.steps))
                log(f"round {r}: {name} {seconds[name][-1] / args.steps * 1000:.1f} ms/step")
        results = {}
        for name, stepper in steppers.items():
            median = statistics.median(seconds[name])
            results[name] = {
                **stepper.info(),
                "ms_per_step": round(1000 * median / args.steps, 2),
                "samples_per_s": round(stepper.batch_size * args.steps / median, 1),
                "steps_per_s": round(args.steps / median, 2),
                "round_samples_per_s": [
                    round(stepper.batch_size * args.steps / s, 1) for s in seconds[name]
                ],
                # what the config's train.steps would take at this rate
                "default_run_minutes": round(
                    stepper.trainer.total_steps * median / args.steps / 60, 1
                ),
                "default_run_steps": stepper.trainer.total_steps,
            }
            stepper.job.logger.close()
        report["results"] = results
        fastest = max(r["samples_per_s"] for r in results.values())
        report["relative_to_fastest"] = {
            name: round(r["samples_per_s"] / fastest, 3) for name, r in results.items()
        }
    emit_report(report, args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
