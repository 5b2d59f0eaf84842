"""Curriculum configs (conf/curriculum/*.yaml), the builder, and composition."""

import pytest
import torch
import yaml

from robolearn.assets import conf_dir
from robolearn.curricula import (
    CURRICULUM_CONFIGS,
    CurriculumSet,
    DomainTeacherCurriculum,
    PrivilegedActionWrapper,
    PrivilegedCurriculum,
    build_curriculum,
    curriculum_config,
)
from robolearn.curricula.privileged import PrivilegedConfig
from robolearn.envs.vec_env import VecEnv


def load(name: str) -> dict:
    return yaml.safe_load((conf_dir() / "curriculum" / f"{name}.yaml").read_text())


def test_every_yaml_matches_its_dataclass_defaults():
    files = sorted(p.stem for p in (conf_dir() / "curriculum").glob("*.yaml"))
    assert files == sorted(CURRICULUM_CONFIGS)
    for name, cls in CURRICULUM_CONFIGS.items():
        parsed_name, settings = curriculum_config(load(name))
        assert parsed_name == name
        # The documented yaml values are the code's defaults: one source of truth, two views.
        assert settings == (cls() if cls is not None else None), name


def test_bad_configs_name_the_key():
    with pytest.raises(ValueError, match="curriculum.name 'bogus'"):
        curriculum_config({"name": "bogus"})
    with pytest.raises(ValueError, match="curriculum.schedule.windw"):
        curriculum_config({"name": "privileged", "schedule": {"windw": 3}})
    with pytest.raises(ValueError, match="beta_step must be in"):
        curriculum_config({"name": "privileged", "schedule": {"beta_step": 0.0}})
    with pytest.raises(ValueError, match="ADS needs expert observations"):
        build_curriculum(load("ads"), VecEnv("lift", 1))


@pytest.mark.parametrize(
    "config, message",
    [
        ({"name": "ads", "percentile": 150.0}, "ads.percentile must be in"),
        ({"name": "ads", "threshold": 0.0}, "ads.threshold must be in"),
        ({"name": "ads", "max_increments": 0}, "ads.max_increments must be >= 1"),
        ({"name": "ads", "target_return": -10.0}, "ads.target_return must be > 0"),
        (
            {"name": "alp_gmm", "teacher": {"bootstrap_episodes": 5}},
            r"bootstrap_episodes and fit_window \(5, 250\) must both be >= max_components \(10\)",
        ),
    ],
)
def test_settings_that_would_fail_mid_run_are_refused_at_start(config, message):
    with pytest.raises(ValueError, match=message):
        curriculum_config(config)


def test_builder_wraps_the_env_for_privileges_and_composes():
    env = VecEnv("lift", 2, task_overrides={"domain": {"object_friction": [0.5, 1.5]}})
    train_env, privileged = build_curriculum(load("privileged"), env)
    assert isinstance(train_env, PrivilegedActionWrapper) and isinstance(
        privileged, PrivilegedCurriculum
    )
    assert train_env.beta == PrivilegedConfig().schedule.init_beta
    same_env, teacher = build_curriculum(load("alp_gmm"), env)
    assert same_env is env and isinstance(teacher, DomainTeacherCurriculum)
    assert build_curriculum(load("none"), env) == (env, None)

    both = CurriculumSet([privileged, teacher])
    privileged.settling = 0  # count episodes from now (see PrivilegedCurriculum)
    info = {
        "episode": {
            "env_ids": torch.tensor([0]),
            "return": torch.tensor([1.0]),
            "success": torch.tensor([True]),
        }
    }
    both.observe(info)
    assert list(privileged.schedule.successes) == [True] and teacher.teacher.num_episodes == 1
    logged = both.update({})
    assert {"privileged/beta", "alp_gmm/episodes"} <= set(logged)
    state = both.state_dict()
    assert set(state) == {"privileged", "alp_gmm"}
    both.load_state_dict(state)
    with pytest.raises(KeyError, match="expected"):
        both.load_state_dict({"privileged": state["privileged"]})
    with pytest.raises(ValueError, match="repeated"):
        CurriculumSet([privileged, privileged])
