"""``EnvWrapper``: the base of env wrappers that change a few methods of a :class:`VecEnv`."""

from __future__ import annotations

from typing import Any


class EnvWrapper:
    """Forwards every attribute it does not define (``num_envs``, ``device``, ``spec``, ``task``,
    ``sim``, ``set_domain_params``, ...) to the wrapped ``env``, so wrappers stack."""

    def __init__(self, env: Any):
        self.env = env

    def __getattr__(self, name: str) -> Any:
        if name == "env":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.env, name)
