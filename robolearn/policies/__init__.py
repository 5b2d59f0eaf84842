"""Policy registry. Classes load lazily so that using one policy does not import the others."""

from __future__ import annotations

import importlib

from robolearn.policies.base import Policy, PolicyConfig

_POLICIES = {
    "bc": "robolearn.policies.bc:BCPolicy",
    "diffusion": "robolearn.policies.diffusion:DiffusionPolicy",
    "edm": "robolearn.policies.edm:EDMPolicy",
}
POLICY_NAMES = tuple(_POLICIES)


def policy_class(name: str) -> type[Policy]:
    if name not in _POLICIES:
        raise ValueError(f"unknown policy {name!r}; choose from {sorted(_POLICIES)}")
    module, cls = _POLICIES[name].split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["POLICY_NAMES", "Policy", "PolicyConfig", "policy_class"]
