"""``Trainer``: fit a policy to demonstrations, one gradient step at a time; resumable.

Read top to bottom: the settings, the data and the policy built from them, then the trainer:
AdamW, a diffusers LR schedule with warm-up, an optional EMA of the weights, and a loop that
logs, validates, evaluates and checkpoints on fixed step counts. When it evaluates in the
simulator it also keeps the best-scoring checkpoint (``<run_dir>/best``), as robomimic and
diffusion_policy do: a policy's loss says little about its success, so a run that scores its
checkpoints in the simulator should be able to keep the best of them.

A run is a function of its seed and the step number. The batch of step ``s`` is cut from an
endless stream of shuffled epochs, each permutation seeded by ``(seed, epoch)``, and torch's
RNG is reseeded from ``(seed, s)`` before the step, so whatever else consumed random numbers
in between (validation, evaluation, a restart) the step sees the same data and noise. That is
what makes a resumed run end with the same weights as one that never stopped.

Ctrl-C is deferred to the end of the current step, so that it never lands between the
optimizer update and the EMA update; the trainer then saves a checkpoint of the completed steps
and reports ``interrupted``. A second Ctrl-C stops at once without saving; checkpoints are
written atomically, so the last one saved stays whole and resumable.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler, default_collate
from tqdm import tqdm

from robolearn.checkpoint import (
    BEST_POINTER,
    capture_rng_state,
    load_training_state,
    restore_rng_state,
    save_checkpoint,
    update_pointer,
)
from robolearn.data.dataset import DemoDataset, WindowConfig
from robolearn.data.hdf5 import validate_dataset
from robolearn.data.normalizer import Normalizer
from robolearn.policies import Policy, PolicyConfig, policy_class
from robolearn.policies.ema import EMA
from robolearn.utils.loggers import ScalarLogger

#: Policies whose weights are averaged (EMA) unless ``train.ema`` says otherwise: diffusion
#: models sample from a noisy optimum, and the average of recent weights samples cleaner.
EMA_BY_DEFAULT = frozenset({"diffusion", "edm"})
DEFAULT_EMA_MAX_DECAY = 0.9999

log = logging.getLogger(__name__)


#: diffusers' schedules that need nothing beyond warm-up and length (``piecewise_constant`` needs
#: step rules, which the config has no key for).
LR_SCHEDULES = (
    "constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial",
)  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    """``train:`` in ``conf/train.yaml``; the comments there say what each key does."""

    steps: int = 5000
    epochs: int = 0
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.95, 0.999)
    lr_schedule: str = "cosine"
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema: bool | None = None
    ema_power: float = 0.75
    ema_max_decay: float | None = None
    checkpoint_every: int = 1000
    log_every: int = 50
    valid_every: int = 500
    eval_every: int = 0
    eval_episodes: int = 50
    eval_envs: int = 25
    num_workers: int = 0
    progress: bool = True

    def __post_init__(self):
        if self.ema is not None and not isinstance(self.ema, bool):
            raise ValueError(
                f"config key 'train.ema' must be true, false or null, got {self.ema!r}"
            )
        decay = self.ema_max_decay
        if decay is not None and (isinstance(decay, bool) or not isinstance(decay, int | float)):
            raise ValueError(
                f"config key 'train.ema_max_decay' must be a number or null, got {decay!r}"
            )
        positive = ("batch_size", "log_every", "eval_episodes", "eval_envs")
        for key in positive:
            if getattr(self, key) <= 0:
                raise ValueError(f"train.{key} must be positive, got {getattr(self, key)}")
        non_negative = (
            "steps", "epochs", "warmup_steps", "grad_clip", "checkpoint_every",
            "valid_every", "eval_every", "num_workers", "weight_decay",
        )  # fmt: skip
        for key in non_negative:
            if getattr(self, key) < 0:
                raise ValueError(f"train.{key} must be >= 0, got {getattr(self, key)}")
        if self.steps == 0 and self.epochs == 0:
            raise ValueError("train.steps (or train.epochs) must be positive")
        if self.lr <= 0:
            raise ValueError(f"train.lr must be positive, got {self.lr}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"train.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}"
            )

    def total_steps(self, num_samples: int) -> int:
        """Gradient steps of the run: ``steps``, or ``epochs`` passes over the samples."""
        if self.epochs:
            return math.ceil(self.epochs * num_samples / self.batch_size)
        return self.steps


@dataclass(frozen=True)
class BestCheckpoint:
    """The in-training evaluation with the highest success rate, and where its weights are (in
    an earlier run dir when the run was resumed)."""

    success_rate: float
    step: int
    path: Path


@dataclass
class TrainResult:
    step: int  # completed gradient steps
    steps_this_session: int  # of which this call to fit() did
    checkpoint: Path  # the checkpoint saved last
    best: BestCheckpoint | None  # the best simulated success; None: no evaluations
    interrupted: bool
    seconds: float  # wall time of this session's loop
    loss: float  # mean training loss over the last logging window


# --- data and policy ---------------------------------------------------------------------------
def load_datasets(path: Path, cfg: PolicyConfig) -> tuple[DemoDataset, DemoDataset | None]:
    """Train split, and the valid split when the file has a non-empty one."""
    window = WindowConfig(cfg.n_obs_steps, cfg.horizon)
    keys = cfg.data_keys or None
    train = DemoDataset(path, keys, window, split="train")
    valid = None
    if validate_dataset(path).masks.get("valid"):
        valid = DemoDataset(path, keys, window, split="valid")
    return train, valid


def make_policy(name: str, cfg: PolicyConfig, train_set: DemoDataset, seed: int = 0) -> Policy:
    """A fresh policy, initialised from ``seed``, whose normaliser is fitted (min-max to
    [-1, 1]) on the train split."""
    normalizer = Normalizer.fit(train_set.stats_arrays(), mode="minmax")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return policy_class(name)(cfg, train_set.spec, normalizer)


class StepBatches(Sampler[list[int]]):
    """Index batches for steps ``start_step, start_step + 1, ...``, without end.

    The stream is the concatenation of per-epoch permutations seeded by ``(seed, epoch)``; step
    ``s`` takes positions ``s * batch_size ..`` of it, across epoch boundaries when needed (so a
    dataset smaller than a batch still trains). Batch ``s`` depends on nothing but those numbers.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, start_step: int = 0):
        self.num_samples, self.batch_size = num_samples, batch_size
        self.seed, self.start_step = seed, start_step

    def _permutation(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(_mix(self.seed, epoch))
        return torch.randperm(self.num_samples, generator=generator).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        epoch, offset = divmod(self.start_step * self.batch_size, self.num_samples)
        order = self._permutation(epoch)
        while True:
            batch: list[int] = []
            while len(batch) < self.batch_size:
                take = min(self.batch_size - len(batch), self.num_samples - offset)
                batch += order[offset : offset + take]
                offset += take
                if offset == self.num_samples:
                    epoch, offset = epoch + 1, 0
                    order = self._permutation(epoch)
            yield batch


def _chunks(num_samples: int, batch_size: int) -> list[list[int]]:
    """Every index once, in order, in batches (the last may be short)."""
    return [
        list(range(i, min(i + batch_size, num_samples))) for i in range(0, num_samples, batch_size)
    ]


def _batches(
    dataset: DemoDataset, sampler: Iterable[list[int]], num_workers: int
) -> Iterator[dict[str, Any]]:
    """Collated batches of the index lists ``sampler`` yields.

    Low-dim datasets are small: all their windows are built once and stacked, and a batch is
    one tensor index per key, which is several times faster than collating samples one by one.
    Datasets with image terms go through a DataLoader (``num_workers`` processes).
    """
    if dataset.image_keys or num_workers:
        return iter(DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers))
    every = default_collate([dataset[i] for i in range(len(dataset))])
    return (_index(every, torch.as_tensor(indices)) for indices in sampler)


def _index(batch: Any, indices: torch.Tensor) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch[indices]
    return {k: _index(v, indices) for k, v in batch.items()}


def _mix(seed: int, index: int) -> int:
    """A 63-bit seed from two integers (distinct pairs give distinct seeds in practice)."""
    return (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + 1) % (1 << 63)


# --- the trainer -------------------------------------------------------------------------------
class Trainer:
    """Trains ``policy`` on ``train_set`` for ``cfg.total_steps`` steps in ``run_dir``.

    ``config`` is the run's resolved config, saved in every checkpoint (``load_policy`` rebuilds
    the policy from it). ``evaluate``, if given, maps the policy to scalars, among them
    ``success_rate``; it runs every ``cfg.eval_every`` steps and is logged under ``eval/``, and
    each evaluation whose success rate is at least the best so far checkpoints the step and
    points ``<run_dir>/best`` at it (ties go to the later, longer-trained weights).
    """

    def __init__(
        self,
        policy: Policy,
        train_set: DemoDataset,
        valid_set: DemoDataset | None,
        cfg: TrainConfig,
        *,
        run_dir: Path,
        config: Mapping[str, Any],
        logger: ScalarLogger,
        seed: int = 0,
        device: str | torch.device = "cpu",
        evaluate: Callable[[Policy], Mapping[str, float]] | None = None,
    ):
        self.cfg, self.run_dir, self.config = cfg, Path(run_dir), dict(config)
        self.logger, self.seed, self.evaluate = logger, seed, evaluate
        self.device = torch.device(device)
        self.train_set, self.valid_set = train_set, valid_set
        self.policy = policy.to(self.device).train()
        self.total_steps = cfg.total_steps(len(train_set))
        params = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay
        )
        from diffusers.optimization import get_scheduler  # heavy import, only for training

        self.scheduler = get_scheduler(
            cfg.lr_schedule,
            self.optimizer,
            num_warmup_steps=min(cfg.warmup_steps, self.total_steps),
            num_training_steps=self.total_steps,
        )
        use_ema = cfg.ema if cfg.ema is not None else policy.name in EMA_BY_DEFAULT
        max_decay = cfg.ema_max_decay
        if max_decay is None:  # the policy's own constant (EDM: 0.999), else diffusion_policy's
            max_decay = getattr(policy.cfg, "ema_decay", DEFAULT_EMA_MAX_DECAY)
        self.ema = EMA(self.policy, power=cfg.ema_power, max_decay=max_decay) if use_ema else None
        self.step = 0
        self.epoch_size = len(train_set)
        self.checkpoint: tuple[int, Path] | None = None  # (step, path) of the last one saved
        self.best: BestCheckpoint | None = None

    @property
    def eval_policy(self) -> Policy:
        """The weights to validate, evaluate and deploy: the EMA copy when there is one."""
        return self.ema.model if self.ema is not None else self.policy

    # --- checkpoints ---------------------------------------------------------------------------
    def checkpoint_dir(self, step: int) -> Path:
        return self.run_dir / "checkpoints" / f"step_{step:07d}"

    def save(self) -> Path:
        """Checkpoint the completed steps into ``run_dir/checkpoints/step_<n>`` and point
        ``run_dir/last`` at it."""
        training_state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": capture_rng_state(),
            "step": self.step,
            "epoch": self.step * self.cfg.batch_size // self.epoch_size,
            **_best_state(self.best),
        }
        path = save_checkpoint(
            self.checkpoint_dir(self.step),
            self.policy,
            ema=self.ema,
            config=self.config,
            training_state=training_state,
        )
        update_pointer(self.run_dir, path)
        self.checkpoint = (self.step, path)
        return path

    def restore(self, checkpoint: Path) -> None:
        """Continue from ``checkpoint`` (whose weights the policy already holds): step,
        optimizer, LR schedule, EMA and RNG state."""
        state = load_training_state(checkpoint)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            if state.get("ema") is None:
                raise ValueError(f"{checkpoint}: has no EMA state, but train.ema is on")
            self.ema.load_state_dict(state["ema"])
        restore_rng_state(state["rng"])
        self.step = int(state["step"])
        self.best = _restore_best(state)
        if self.best is not None:  # the resumed run's own pointer, to the earlier run's weights
            self.run_dir.mkdir(parents=True, exist_ok=True)
            update_pointer(self.run_dir, self.best.path, BEST_POINTER)

    # --- the loop ------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        cfg = self.cfg
        sampler = StepBatches(len(self.train_set), cfg.batch_size, self.seed, self.step)
        batches = _batches(self.train_set, sampler, cfg.num_workers)
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc=f"train {self.policy.name}",
            unit="step",
            disable=not cfg.progress,
            dynamic_ncols=True,
        )
        window = _Window()
        stop = _StopFlag()
        start_step, start = self.step, time.perf_counter()
        try:
            with bar, _sigint_at_step_boundary(stop):
                while self.step < self.total_steps and not stop.requested:
                    loss, logs = self._train_step(next(batches))
                    self.step += 1
                    bar.update(1)
                    window.add(loss, logs)
                    self._after_step(bar, window)
        except KeyboardInterrupt:
            if stop.aborted:
                raise
            stop.requested = True
        if self.checkpoint is None or self.checkpoint[0] != self.step:
            self.save()
        assert self.checkpoint is not None
        return TrainResult(
            step=self.step,
            steps_this_session=self.step - start_step,
            checkpoint=self.checkpoint[1],
            best=self.best,
            interrupted=stop.requested,
            seconds=time.perf_counter() - start,
            loss=window.last_loss,
        )

    def _train_step(self, batch: dict[str, Any]) -> tuple[float, dict[str, float]]:
        torch.manual_seed(_mix(self.seed, self.step))
        loss, logs = self.policy.compute_loss(_to_device(batch, self.device))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.cfg.grad_clip)
            logs = {**logs, "grad_norm": float(norm)}
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.policy)
        return loss.item(), logs

    def _after_step(self, bar: tqdm, window: _Window) -> None:
        """Logging, validation, evaluation and checkpoints due at the step just completed."""
        cfg, step = self.cfg, self.step
        scalars: dict[str, float] = {}
        if step % cfg.log_every == 0 or step == self.total_steps:
            scalars |= {f"train/{k}": v for k, v in window.flush().items()}
            scalars["train/lr"] = self.scheduler.get_last_lr()[0]
            bar.set_postfix(loss=f"{scalars['train/loss']:.4f}", refresh=False)
        if self.valid_set is not None and _due(step, cfg.valid_every, self.total_steps):
            scalars["valid/loss"] = self.valid_loss()
        new_best = False
        if self.evaluate is not None and _due(step, cfg.eval_every, self.total_steps):
            result = self.evaluate(self.eval_policy)
            self.policy.train()
            scalars |= {f"eval/{k}": v for k, v in result.items()}
            rate = float(result["success_rate"])
            new_best = self.best is None or rate >= self.best.success_rate
            if new_best:
                self.best = BestCheckpoint(rate, step, self.checkpoint_dir(step).resolve())
            scalars["eval/best_success_rate"] = self.best.success_rate
        if scalars:
            self.logger.log(scalars, step)
        if new_best or _due(step, cfg.checkpoint_every, self.total_steps):
            path = self.save()  # after the evaluation, so that the checkpoint records the best
            if new_best:
                update_pointer(self.run_dir, path, BEST_POINTER)

    @torch.no_grad()
    def valid_loss(self) -> float:
        """Mean loss of the evaluated weights over the valid split, with fixed noise so that
        successive values are comparable."""
        assert self.valid_set is not None
        policy = self.eval_policy
        was_training = policy.training
        policy.eval()
        batches = _batches(self.valid_set, _chunks(len(self.valid_set), self.cfg.batch_size), 0)
        total, count = 0.0, 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for batch in batches:
                loss, _ = policy.compute_loss(_to_device(batch, self.device))
                n = len(batch["action"])
                total, count = total + float(loss) * n, count + n
        policy.train(was_training)
        return total / count


class _Window:
    """Running means of the scalars logged since the last flush."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0
        self.last_loss = float("nan")

    def add(self, loss: float, logs: Mapping[str, float]) -> None:
        for key, value in {"loss": loss, **logs}.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.count += 1

    def flush(self) -> dict[str, float]:
        means = {k: v / self.count for k, v in self.sums.items()} if self.count else {}
        self.last_loss = means.get("loss", self.last_loss)
        self.sums, self.count = {}, 0
        return means


def _best_state(best: BestCheckpoint | None) -> dict[str, Any]:
    """``best`` as plain values for a checkpoint's ``state.json``."""
    if best is None:
        return {}
    return {
        "best_success_rate": best.success_rate,
        "best_step": best.step,
        "best_checkpoint": str(best.path),
    }


def _restore_best(state: Mapping[str, Any]) -> BestCheckpoint | None:
    """The best evaluation a checkpoint's state records, if its weights are still on disk."""
    if state.get("best_checkpoint") is None:
        return None
    path = Path(state["best_checkpoint"])
    if not path.is_dir():
        log.warning("the best checkpoint so far, %s, is gone: the best restarts from here", path)
        return None
    return BestCheckpoint(float(state["best_success_rate"]), int(state["best_step"]), path)


def _due(step: int, every: int, total: int) -> bool:
    """Whether a periodic action is due at ``step``: every ``every`` steps and at the end."""
    return every > 0 and (step % every == 0 or step == total)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


@dataclass
class _StopFlag:
    requested: bool = False  # stop after the current step and save
    aborted: bool = False  # stop now, without saving: the state may be mid-update


@contextmanager
def _sigint_at_step_boundary(flag: _StopFlag) -> Iterator[None]:
    """Turn the first Ctrl-C into ``flag.requested``, which the loop checks between steps; a
    second one sets ``flag.aborted`` and raises ``KeyboardInterrupt`` at once. Only the main
    thread can own signal handlers; elsewhere Ctrl-C keeps its default behaviour."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if flag.requested:
            flag.aborted = True
            raise KeyboardInterrupt
        flag.requested = True
        print("\nCtrl-C: stopping after this step to save a checkpoint (Ctrl-C again: abort)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
