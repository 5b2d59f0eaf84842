"""Vector envs: the torch ``VecEnv`` and its gymnasium views (importing this registers the
``robolearn/<Task>-v0`` gymnasium ids). The rsl_rl adapter is imported on its own,
``robolearn.envs.rsl_rl_adapter``, because rsl_rl is an optional extra."""

from robolearn.envs.gymnasium_adapter import GymnasiumEnv, GymnasiumVectorEnv
from robolearn.envs.vec_env import VecEnv

__all__ = ["GymnasiumEnv", "GymnasiumVectorEnv", "VecEnv"]
