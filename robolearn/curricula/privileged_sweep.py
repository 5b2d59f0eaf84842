"""How much privilege a privileged-action run's policy still needs: its success at chosen β.

A run's checkpoint exports the deployed policy, i.e. the trained one at β = 0
(:mod:`robolearn.curricula.privileged_export`). The trained policy itself, with its privileged
outputs, is the actor in the checkpoint's training state. Evaluating it in the privileged env at
β = 1, 0.5, ..., 0 shows where it stops sufficing, which the training curves cannot: the rolling
success is taken at one β at a time, and β only falls. A policy whose success drops to 0 between
two levels leans on a privilege that does a step of the task there (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from robolearn.checkpoint import (
    load_config,
    load_policy,
    load_training_state,
    resolve_checkpoint,
)
from robolearn.curricula import PrivilegedConfig, curriculum_config
from robolearn.curricula.privileged_env import PrivilegedActionWrapper
from robolearn.data.normalizer import Normalizer
from robolearn.envs.vec_env import VecEnv
from robolearn.eval.evaluate import EvalResult, evaluate
from robolearn.policies.bc import BCPolicy

#: The actor's state-dict prefix of the policy it wraps (``GaussianActor.policy``).
ACTOR_POLICY_PREFIX = "policy."


def privileged_settings(config: dict) -> PrivilegedConfig:
    """The privileged curriculum's settings in a ``robolearn-rl`` run's config; a run without
    that curriculum raises ``ValueError``."""
    entry = (config.get("curriculum") or {}).get("privileged")
    if entry is None:
        trained = sorted(config.get("curriculum") or {})
        raise ValueError(f"not a privileged-action run: its curricula are {trained}")
    _, settings = curriculum_config(entry, "curriculum.privileged.")
    return settings


def trained_policy(checkpoint: str | Path, env: PrivilegedActionWrapper) -> BCPolicy:
    """The policy the run trained (``A + P`` actions, for ``env``'s widened spec), from the
    actor saved in ``checkpoint``'s training state."""
    ckpt = resolve_checkpoint(checkpoint)
    deployed = load_policy(ckpt, "cpu")
    actor = load_training_state(ckpt).get("actor")
    if actor is None:
        raise FileNotFoundError(f"{ckpt}: no training_state/actor.pt to rebuild the trained policy")
    policy_state = {
        k[len(ACTOR_POLICY_PREFIX) :]: v
        for k, v in actor.items()
        if k.startswith(ACTOR_POLICY_PREFIX)
    }
    # Placeholder statistics of the widened action's shape; the state dict holds the real ones.
    stats = deployed.normalizer.to_dict()
    width = env.spec.action.dim
    for part in ("scale", "offset"):
        stats["action"][part] = [1.0] * width
    policy = BCPolicy(deployed.cfg, env.spec, Normalizer(stats))
    policy.load_state_dict(policy_state)
    return policy.eval()


def success_by_beta(
    checkpoint: str | Path,
    betas: Sequence[float],
    n_episodes: int,
    *,
    num_envs: int = 50,
    seed: int = 100000,
    progress: bool = False,
) -> dict[float, EvalResult]:
    """The trained policy's success on the run's task at each privilege level in ``betas``
    (episodes end at success; the same env seed at every level)."""
    bad = [b for b in betas if not 0.0 <= b <= 1.0]
    if not betas or bad:
        raise ValueError(f"betas must be a non-empty list of levels in [0, 1], got {list(betas)}")
    config = load_config(resolve_checkpoint(checkpoint))
    settings = privileged_settings(config)
    task_overrides = dict(config["task"])
    task = task_overrides.pop("name")
    env = VecEnv(
        task,
        num_envs,
        seed=seed,
        task_overrides={**task_overrides, "terminate_on_success": True},
    )
    privileged = PrivilegedActionWrapper(env, settings.action, beta=0.0)
    policy = trained_policy(checkpoint, privileged)
    results = {}
    try:
        for beta in betas:
            privileged.set_privilege(beta)
            results[beta] = evaluate(policy, privileged, n_episodes, seed=seed, progress=progress)
    finally:
        env.close()
    return results
