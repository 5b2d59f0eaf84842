"""Curricula for RL fine-tuning (METHODS.md §5-7): privileged action, automatic discount
scheduling, ALP-GMM domain teacher. See :mod:`robolearn.curricula.base` for the seam.

``conf/curriculum/<name>.yaml`` holds one curriculum's settings under ``name``;
:func:`build_curriculum` turns it into the curriculum and the env the trainer should step (the
privileged-action curriculum wraps the env: its actions have extra dimensions).
"""

from __future__ import annotations

from typing import Any

from robolearn.curricula.base import Curriculum, CurriculumSet
from robolearn.curricula.discount import ADSConfig, ADSCurriculum
from robolearn.curricula.domain_teacher import DomainTeacherConfig, DomainTeacherCurriculum
from robolearn.curricula.privileged import PrivilegedConfig, PrivilegedCurriculum
from robolearn.curricula.privileged_env import PrivilegedActionWrapper
from robolearn.envs.vec_env import VecEnv
from robolearn.utils.config import from_dict

#: Settings dataclass of each curriculum name; ``none`` has none.
CURRICULUM_CONFIGS: dict[str, type | None] = {
    "none": None,
    "privileged": PrivilegedConfig,
    "ads": ADSConfig,
    "alp_gmm": DomainTeacherConfig,
}


def curriculum_config(data: dict[str, Any], path: str = "curriculum.") -> tuple[str, Any]:
    """``(name, settings)`` from a ``curriculum`` config mapping; bad names and keys raise,
    named with the prefix ``path``."""
    data = dict(data)
    name = data.pop("name", None)
    if name not in CURRICULUM_CONFIGS:
        raise ValueError(f"{path}name {name!r}: choose from {sorted(CURRICULUM_CONFIGS)}")
    cls = CURRICULUM_CONFIGS[name]
    if cls is None:
        if data:
            raise ValueError(f"curriculum 'none' takes no settings, got {sorted(data)}")
        return name, None
    settings = from_dict(cls, data, path=path)
    settings.validate()
    return name, settings


def build_curriculum(
    data: dict[str, Any], env: VecEnv
) -> tuple[VecEnv | PrivilegedActionWrapper, Curriculum | None]:
    """The env to train in and the curriculum driving it, from a ``curriculum`` config mapping."""
    name, settings = curriculum_config(data)
    if name == "none":
        return env, None
    if name == "privileged":
        wrapped = PrivilegedActionWrapper(env, settings.action, beta=settings.schedule.init_beta)
        return wrapped, PrivilegedCurriculum(wrapped, settings.schedule)
    if name == "ads":
        if not settings.dataset:
            raise ValueError("curriculum.dataset is empty: ADS needs expert observations (HDF5)")
        return env, ADSCurriculum.from_dataset(settings.dataset, env.max_episode_length, settings)
    return env, DomainTeacherCurriculum(env, settings)


__all__ = [
    "ADSConfig",
    "ADSCurriculum",
    "CURRICULUM_CONFIGS",
    "Curriculum",
    "CurriculumSet",
    "DomainTeacherConfig",
    "DomainTeacherCurriculum",
    "PrivilegedActionWrapper",
    "PrivilegedConfig",
    "PrivilegedCurriculum",
    "build_curriculum",
    "curriculum_config",
]
