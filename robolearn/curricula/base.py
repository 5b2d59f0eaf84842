"""``Curriculum``: what a trainer drives, whatever the curriculum changes.

A curriculum watches training and changes something about it: the env's domain parameters
(ALP-GMM), the discount (ADS), the privilege level (privileged action). The trainer calls two
hooks and never needs to know which curriculum it holds:

* :meth:`Curriculum.observe` after every env step with the env's ``info`` (episodes that ended,
  success flags), for curricula that act per episode (a domain teacher picks the parameters of a
  world's next episode as soon as its current one ends);
* :meth:`Curriculum.after_reset` after the env reset every world at once (the trainer's start,
  or a curriculum that needs rollouts to start with fresh episodes), for curricula that track
  what each world's episode in progress runs with;
* :meth:`Curriculum.update` once per training iteration with the iteration's statistics; it
  returns scalars to log.

``state_dict``/``load_state_dict`` carry everything needed to resume (plain tensors, numbers and
lists, so that checkpoints load with ``weights_only=True``). :class:`CurriculumSet` composes any
combination, updating them in order and saving each under its own name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any


class Curriculum(ABC):
    """One curriculum; ``name`` prefixes its logged scalars and keys its saved state."""

    name: str

    def observe(self, info: dict[str, Any]) -> None:
        """Called after every env step with ``VecEnv.step``'s ``info``. Default: nothing."""

    def after_reset(self) -> None:
        """Called after ``env.reset()`` restarted every world. Default: nothing."""

    @abstractmethod
    def update(self, stats: dict[str, Any]) -> dict[str, float]:
        """Once per training iteration; returns scalars to log (keys ``<name>/<what>``)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, as tensors, numbers and lists."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class CurriculumSet(Curriculum):
    """Several curricula driven as one: hooks run in the given order, state saved per name."""

    name = "curricula"

    def __init__(self, curricula: Iterable[Curriculum]):
        self.curricula = list(curricula)
        names = [c.name for c in self.curricula]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"curricula must have distinct names; repeated: {duplicates}")

    def observe(self, info: dict[str, Any]) -> None:
        for curriculum in self.curricula:
            curriculum.observe(info)

    def after_reset(self) -> None:
        for curriculum in self.curricula:
            curriculum.after_reset()

    def update(self, stats: dict[str, Any]) -> dict[str, float]:
        logged: dict[str, float] = {}
        for curriculum in self.curricula:
            logged.update(curriculum.update(stats))
        return logged

    def state_dict(self) -> dict[str, Any]:
        return {c.name: c.state_dict() for c in self.curricula}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = sorted(c.name for c in self.curricula)
        if sorted(state) != expected:
            raise KeyError(f"curriculum state has entries {sorted(state)}, expected {expected}")
        for curriculum in self.curricula:
            curriculum.load_state_dict(state[curriculum.name])
