"""``robolearn-eval``: success rate of a trained policy in batched simulated worlds.

    robolearn-eval checkpoint=outputs/2025-06-01/12-00-00_edm_lift
    robolearn-eval checkpoint=<run or checkpoint dir> num_episodes=200 num_envs=100 video=true
    robolearn-eval checkpoint=<dir> +policy.sampler=ddpm +policy.n_action_steps=2

The task and its settings come from the checkpoint's config, so the policy meets the env it
was trained for (a spec mismatch is refused naming the key). ``policy`` changes settings of the
saved policy config that hold no weights (a diffusion policy's sampler and its steps, EDM's
``num_steps``, ``n_action_steps``), so one checkpoint can be evaluated several ways; Hydra needs
the ``+`` because the keys are the checkpoint's, not ``conf/eval.yaml``'s. Writes ``eval_info.json`` (and
``video.mp4``) into the run dir. Exit status: 0 done, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from robolearn.assets import conf_dir
from robolearn.checkpoint import (
    check_policy_env_compatible,
    load_config,
    load_policy,
)
from robolearn.cli.common import (
    BAD_INPUT,
    EXIT_INTERRUPTED,
    checkpoint_settings,
    fail,
    parse_device,
    run_hydra_main,
)
from robolearn.envs.vec_env import VecEnv
from robolearn.eval.evaluate import EVAL_INFO_FILE, EvalResult, evaluate
from robolearn.eval.runner import check_chunking

PROG = "robolearn-eval"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalSettings:
    """``conf/eval.yaml`` (and ``eval:`` of ``conf/main.yaml``, which has no checkpoint)."""

    checkpoint: str = ""
    num_episodes: int = 100
    num_envs: int = 50
    seed: int = 100000
    video: bool = False
    video_episodes: int = 3
    use_ema: bool = True
    device: str = "cpu"
    threads: int = 0
    progress: bool = True
    chunking: str = "receding"  # receding | ensemble (ACT's temporal ensembling), as on a robot
    ensemble_m: float = 0.01  # ensemble weights exp(-m * i), i = 0 the oldest chunk
    #: changes to the checkpoint's policy config that hold no weights (e.g. sampler: ddpm)
    policy: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for key in ("num_episodes", "num_envs"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        check_chunking(self.chunking, self.ensemble_m)
        if not isinstance(self.policy, dict):
            raise ValueError(f"config key 'policy' must be a mapping, got {self.policy!r}")


@dataclass
class EvalReport:
    result: EvalResult
    checkpoint: Path
    eval_info: Path
    video: Path | None


@hydra.main(config_path=str(conf_dir()), config_name="eval", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    settings, checkpoint = checkpoint_settings(PROG, cfg, EvalSettings, "evaluate")
    run_evaluation(settings, checkpoint, Path(HydraConfig.get().runtime.output_dir), PROG)


def run_evaluation(
    settings: EvalSettings, checkpoint: Path, out_dir: Path, prog: str = PROG
) -> EvalReport:
    """Evaluate ``checkpoint`` in its task; write ``eval_info.json`` (and the video) to
    ``out_dir``. Bad input exits 2, Ctrl-C exits 130."""
    try:
        parse_device(settings.device)  # a device this machine lacks: one line, exit 2
        if settings.threads:
            torch.set_num_threads(settings.threads)
        policy = load_policy(
            checkpoint, settings.device, use_ema=settings.use_ema, config_changes=settings.policy
        )
        if settings.policy:
            log.info("policy config changes: %s", settings.policy)
        task, task_cfg = _task_of(checkpoint)
        env = VecEnv(
            task,
            settings.num_envs,
            seed=settings.seed,
            device=settings.device,
            task_overrides={**task_cfg, "terminate_on_success": True},
        )
        check_policy_env_compatible(policy, env.spec)
    except BAD_INPUT as e:
        fail(prog, e)
    video = out_dir / "video.mp4" if settings.video else None
    try:
        result = evaluate(
            policy,
            env,
            settings.num_episodes,
            seed=settings.seed,
            video=video,
            video_episodes=settings.video_episodes,
            progress=settings.progress,
            chunking=settings.chunking,
            ensemble_m=settings.ensemble_m,
        )
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing written", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        env.close()
    eval_info = result.write_eval_info(out_dir / EVAL_INFO_FILE)
    log.info("%s", result.summary())
    log.info("wrote %s%s", eval_info, f" and {result.video}" if result.video else "")
    return EvalReport(result, checkpoint, eval_info, Path(result.video) if result.video else None)


def _task_of(checkpoint: Path) -> tuple[str, dict[str, Any]]:
    """The task name and settings a checkpoint was trained on, from its config."""
    config = load_config(checkpoint)
    task_cfg = dict(config.get("task") or {})
    name = task_cfg.pop("name", None)
    if not isinstance(name, str):
        raise ValueError(f"checkpoint {checkpoint}: its config.yaml names no task")
    return name, task_cfg


def main() -> None:
    run_hydra_main(PROG, _main)


if __name__ == "__main__":
    main()
