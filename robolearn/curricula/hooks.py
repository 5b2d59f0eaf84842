"""Curricula in the RL trainer: the env it steps, and the callbacks of its :class:`PPORunner`.

The ``curriculum`` config holds one mapping per selected curriculum, keyed by its name
(``conf/curriculum/<name>.yaml`` puts itself at ``curriculum.<name>``, so that
``curriculum=[privileged,alp_gmm]`` composes several). :func:`attach_curricula` turns it into

* the env to train in: the task's env wrapped by the curricula that change it (privileged action
  widens the action, ADS pays OT rewards), then by :class:`CurriculumEnv`, which tells every
  curriculum about every step and every full reset;
* :class:`CurriculumHooks`, the runner's callbacks: before each rollout ADS sets γ and restarts
  every world's episode (its rewards need whole episodes, see :mod:`robolearn.curricula.ot_env`);
  after the rollout, before GAE, ADS's OT rewards are added; after each PPO update every
  curriculum updates and its scalars are logged under ``curriculum/``; the exported policy drops
  the privileged action dimensions; the curricula's state goes into the checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from robolearn.curricula import build_curriculum, curriculum_config
from robolearn.curricula.base import Curriculum, CurriculumSet
from robolearn.curricula.discount import ADSCurriculum, Episode
from robolearn.curricula.ot_env import OTRewardEnv
from robolearn.curricula.privileged_export import deploy_policy
from robolearn.envs.vec_env import Obs, VecEnv
from robolearn.envs.wrapper import EnvWrapper
from robolearn.policies import Policy
from robolearn.spec import ObsSpec


def parse_curricula(data: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Each selected curriculum's config mapping (with its ``name``), validated, in config order;
    ``none`` entries are dropped. Nothing is built and no file is read."""
    selected = []
    for key, entry in (data or {}).items():
        if not isinstance(entry, Mapping):
            raise ValueError(
                f"curriculum.{key} must be a mapping of settings, got {entry!r}; select curricula "
                "with curriculum=<name> or curriculum=[<name>,<name>]"
            )
        entry = {"name": key, **entry}
        if entry["name"] != key:
            raise ValueError(f"curriculum.{key}.name is {entry['name']!r}, expected {key!r}")
        name, _ = curriculum_config(entry, path=f"curriculum.{key}.")
        if name != "none":
            selected.append(entry)
    return selected


class CurriculumEnv(EnvWrapper):
    """The trainer's env: forwards to ``env`` and tells ``curricula`` each step's info and each
    reset of every world."""

    def __init__(self, env: Any, curricula: Curriculum):
        super().__init__(env)
        self.curricula = curricula

    def reset(self, seed: int | None = None) -> tuple[Obs, dict[str, Any]]:
        out = self.env.reset(seed)
        self.curricula.after_reset()
        return out

    def step(
        self, action: torch.Tensor
    ) -> tuple[Obs, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        out = self.env.step(action)
        self.curricula.observe(out[4])
        return out


class CurriculumHooks:
    """:class:`~robolearn.rl.runner.PPORunner` callbacks driving a set of curricula."""

    def __init__(
        self,
        curricula: CurriculumSet,
        ot_env: OTRewardEnv | None = None,
        deploy_spec: ObsSpec | None = None,
    ):
        self.curricula, self.ot_env, self.deploy_spec = curricula, ot_env, deploy_spec
        self._episodes: list[Episode] = []  # the last rollout's whole episodes, for ADS

    def check_actor(self, actor: Any) -> None:
        """Refuse an actor the curricula cannot train, before anything runs."""
        if self.ot_env is not None and actor.n_exec != 1:
            raise ValueError(
                f"curriculum ads pays a reward per env step; the {type(actor).__name__} executes "
                f"{actor.n_exec} env steps per decision (use a bc/gaussian actor)"
            )

    def before_rollout(self, runner: Any) -> None:
        if self.ot_env is not None:
            runner.gamma = self.ot_env.ads.gamma
            runner.reset_envs()

    def after_rollout(self, runner: Any) -> None:
        if self.ot_env is not None:
            rewards, self._episodes = self.ot_env.episode_rewards()
            runner.storage.rewards += rewards

    def after_update(self, runner: Any, stats: dict[str, float]) -> None:
        logged = self.curricula.update({**stats, "episodes": self._episodes})
        self._episodes = []
        if runner.iteration % runner.cfg.log_every == 0:
            runner.logger.log({f"curriculum/{k}": v for k, v in logged.items()}, runner.env_steps)

    def export_policy(self, policy: Policy) -> Policy:
        """The deployed policy: without the privileged action dimensions, if any."""
        if self.deploy_spec is None:
            return policy
        return deploy_policy(policy, self.deploy_spec)  # type: ignore[arg-type]

    def state_dict(self) -> dict[str, Any]:
        return self.curricula.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.curricula.load_state_dict(state)


def attach_curricula(
    data: Mapping[str, Any] | None, env: VecEnv, rollout_steps: int
) -> tuple[Any, CurriculumHooks | None]:
    """The env to train in and the runner's callbacks for the ``curriculum`` config ``data``;
    ``(env, None)`` without curricula. ``rollout_steps``: env steps per world per rollout.
    A task that lacks what a curriculum needs raises here, before any training."""
    train_env: Any = env
    curricula: list[Curriculum] = []
    ot_env = None
    for entry in parse_curricula(data):
        train_env, curriculum = build_curriculum(entry, train_env)
        assert curriculum is not None
        curricula.append(curriculum)
        if isinstance(curriculum, ADSCurriculum):
            if rollout_steps % env.max_episode_length:
                raise ValueError(
                    f"curriculum ads rewards whole episodes: rl.num_steps ({rollout_steps}) must "
                    f"be a multiple of task.episode_length ({env.max_episode_length})"
                )
            train_env = ot_env = OTRewardEnv(train_env, curriculum)
    if not curricula:
        return env, None
    curriculum_set = CurriculumSet(curricula)
    widened = train_env.spec.action.dim != env.spec.action.dim
    hooks = CurriculumHooks(curriculum_set, ot_env, env.spec if widened else None)
    return CurriculumEnv(train_env, curriculum_set), hooks
