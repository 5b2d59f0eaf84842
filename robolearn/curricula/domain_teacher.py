"""``DomainTeacherCurriculum``: an ALP-GMM teacher chooses each world's domain parameters.

The env draws a world's domain parameters at every reset; ``VecEnv.set_domain_params`` replaces
that draw for a world's *next* reset. With same-step autoreset the next episode starts inside the
step that ends the current one, so the curriculum always keeps one choice pending per world:
when a world's episode ends, the teacher learns the return of the parameters that episode ran
with, the world has already started on the pending choice, and a new choice is sampled for the
episode after it.

The teacher works on the parameters named in ``params`` (default: every domain parameter whose
range is not a point); the others keep the env's own uniform draw.

Fits wait for the end of the rollout (``fit_once_per_iteration``). The paper's teacher refits
every 250 episodes of one sequential learner; with a thousand worlds hundreds of episodes end per
env step, so that cadence means a fit (nine mixtures) at nearly every step, while the policy, and
with it the learning progress the fit describes, only changes at PPO updates. A fit that falls due
inside a rollout therefore runs at the iteration's end, on the window ending at its due point
(METHODS §7's windows, at most one fit per policy update). Six iterations on 1024 ``lift_flat``
worlds, 2-core CPU: no curriculum 42 s, fits at once 50 s, fits deferred 45 s; before fits were held
to one BLAS thread, fits at once took 86 s of 158 on a loaded machine and held a GPU run to ~3k env
steps/s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from robolearn.curricula.alp_gmm import ALPGMMConfig, ALPGMMTeacher
from robolearn.curricula.base import Curriculum
from robolearn.envs.vec_env import VecEnv


@dataclass(frozen=True)
class DomainTeacherConfig:
    #: Domain parameters the teacher chooses; empty: all whose range is not a point.
    params: tuple[str, ...] = ()
    teacher: ALPGMMConfig = field(default_factory=ALPGMMConfig)
    #: Run a fit that falls due during a rollout at the iteration's end (False: at once, as in the
    #: paper's sequential setting; see the module docstring).
    fit_once_per_iteration: bool = True

    def validate(self) -> None:
        self.teacher.validate()


class DomainTeacherCurriculum(Curriculum):
    name = "alp_gmm"

    def __init__(self, env: VecEnv, cfg: DomainTeacherConfig | None = None):
        self.cfg = cfg or DomainTeacherConfig()
        self.env = env
        domain = env.task.domain
        bounds = domain.bounds.cpu().double()
        names = self.cfg.params or tuple(
            n for i, n in enumerate(domain.names) if bounds[i, 0] < bounds[i, 1]
        )
        unknown = [n for n in names if n not in domain.names]
        if unknown:
            raise ValueError(
                f"alp_gmm.params: unknown domain parameters {unknown}; the env has {list(domain.names)}"
            )
        if not names:
            raise ValueError(
                "alp_gmm: every domain parameter range of this task is a point; give ranges in "
                f"task.domain ({list(domain.names)}) for the teacher to choose from"
            )
        self.params = names
        self.index = torch.tensor([domain.index(n) for n in names])
        self.teacher = ALPGMMTeacher(bounds[self.index, 0], bounds[self.index, 1], self.cfg.teacher)
        self._reported = 0  # teacher episodes already summarised by update()
        self.sync()

    def sync(self) -> None:
        """Read the parameters of the episodes in progress and choose every world's next ones.

        Runs at construction and after every ``env.reset()`` (:meth:`after_reset`).
        """
        self._running = self._current(self.env.sim.all_ids())
        self._choose_next(self.env.sim.all_ids())

    def after_reset(self) -> None:
        self.sync()

    def observe(self, info: dict[str, Any]) -> None:
        episode = info.get("episode")
        if episode is None:
            return
        ids = episode["env_ids"]
        self.teacher.update(
            self._running[ids.cpu()],
            episode["return"].cpu(),
            fit=not self.cfg.fit_once_per_iteration,
        )
        self._running[ids.cpu()] = self._current(ids)  # the pending choice, started by autoreset
        self._choose_next(ids)

    def update(self, stats: dict[str, Any]) -> dict[str, float]:
        """Run a fit that fell due in the rollout; teacher statistics, and the mean of each taught
        parameter over the episodes that ended since the last update (where the teacher is sending
        the learner)."""
        self.teacher.fit_pending()
        teacher, mixture = self.teacher, self.teacher.mixture
        logged = {
            f"{self.name}/episodes": float(teacher.num_episodes),
            f"{self.name}/components": float(mixture.num_components if mixture else 0),
            f"{self.name}/mean_alp": float(teacher.alp[-self.cfg.teacher.fit_window :].mean())
            if teacher.num_episodes
            else 0.0,
        }
        recent = teacher.tau[self._reported :]
        if len(recent):
            means = teacher.low + recent.mean(0) * (teacher.high - teacher.low)
            for name, value in zip(self.params, means.tolist(), strict=True):
                logged[f"{self.name}/tau_mean/{name}"] = value
        self._reported = teacher.num_episodes
        return logged

    def state_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher.state_dict(), "taught": self._taught()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The history is in [0, 1]^d of the saved parameters and ranges: refuse other ones.
        saved = state.get("taught", self._taught())
        if saved != self._taught():
            raise ValueError(
                f"alp_gmm: the checkpoint's teacher was trained on {saved}, this run teaches "
                f"{self._taught()}; resume with the same params and task.domain ranges"
            )
        self.teacher.load_state_dict(state["teacher"])
        self._reported = self.teacher.num_episodes
        # The restored env's worlds start fresh episodes: their parameters come from the env.
        self.sync()

    def _taught(self) -> dict[str, list[float]]:
        """Each taught parameter's range, as saved with the teacher's history."""
        low, high = self.teacher.low.tolist(), self.teacher.high.tolist()
        return {n: [lo, hi] for n, lo, hi in zip(self.params, low, high, strict=True)}

    def _current(self, env_ids: torch.Tensor) -> torch.Tensor:
        values = self.env.task.domain.values[env_ids.to(self.env.device)]
        return values[:, self.index.to(values.device)].cpu().double()

    def _choose_next(self, env_ids: torch.Tensor) -> None:
        """Pending choice for ``env_ids``: the teacher's parameters; NaN leaves the rest to the
        reset's uniform draw."""
        domain = self.env.task.domain
        values = torch.full((env_ids.numel(), len(domain.names)), float("nan")).to(domain.bounds)
        values[:, self.index.to(values.device)] = self.teacher.sample(env_ids.numel()).to(values)
        self.env.set_domain_params(env_ids, values)
