from robolearn.envs.vec_env import VecEnv

__all__ = ["VecEnv"]
