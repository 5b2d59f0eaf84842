"""The deployed policy of a privileged-action run: the trained one without its privileged outputs.

The actor trains with ``A + P`` action dimensions, the privileged ``P`` last
(:class:`~robolearn.curricula.privileged_env.PrivilegedActionWrapper`); the plain task takes
``A``. A ``bc`` network produces each action dimension from its own rows of the last layer, so
the deployed policy is the same network with the rows of the privileged dimensions removed and
the action normaliser cut to its first ``A`` entries: its first ``A`` outputs are exactly the
trained policy's. Evaluating it on the plain task is evaluating the trained policy at β = 0
(where the privileged outputs act on nothing), and ``load_policy`` / ``robolearn-eval`` read it
like any ``bc`` checkpoint.
"""

from __future__ import annotations

import torch

from robolearn.data.normalizer import Normalizer
from robolearn.policies.bc import BCPolicy
from robolearn.spec import ObsSpec


def deploy_policy(policy: BCPolicy, deploy_spec: ObsSpec) -> BCPolicy:
    """A copy of ``policy`` (``A + P`` actions) that acts in ``deploy_spec`` (``A`` actions)."""
    if not isinstance(policy, BCPolicy):
        raise TypeError(
            f"privileged export needs a 'bc' policy, got {getattr(policy, 'name', type(policy))!r}"
        )
    keep, full = deploy_spec.action.dim, policy.action_dim
    if not 0 < keep < full:
        raise ValueError(
            f"privileged export: the deployed action dim {keep} must be below the trained {full}"
        )
    stats = policy.normalizer.to_dict()
    for part in ("scale", "offset"):
        stats["action"][part] = stats["action"][part][:keep]
    deployed = BCPolicy(policy.cfg, deploy_spec, Normalizer(stats))

    # Output rows: (mean[, log-std]) x horizon x action dim, flat; keep the first ``keep`` dims.
    blocks = 2 if policy.cfg.head == "gaussian" else 1
    rows = torch.arange(blocks * policy.cfg.horizon * full).view(blocks, -1, full)[..., :keep]
    last = f"net.{len(policy.net) - 1}."
    # The action statistics under every path the normaliser is shared at (policy, encoder).
    action_stats = {
        f"{name}.action__{part}"
        for name, m in policy.named_modules(remove_duplicate=False)
        if m is policy.normalizer
        for part in ("scale", "offset")
    }
    state = {}
    for key, value in policy.state_dict().items():
        if key.startswith(last):
            value = value[rows.flatten().to(value.device)]
        elif key in action_stats:
            value = value[:keep]
        state[key] = value.detach().cpu()
    deployed.load_state_dict(state)
    return deployed.to(next(policy.parameters()).device).eval()
