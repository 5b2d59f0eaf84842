"""Generalised advantage estimation over decisions of a semi-MDP.

Inputs are per decision ``t`` (rows) and world (columns):

* ``rewards``: the decision's reward, already including the time-out bootstrap
  ``γ^k · V(final_obs)`` when the episode was truncated after ``k`` env steps of the decision;
* ``dones``: the episode ended during the decision (terminated or truncated) — nothing is
  bootstrapped across it (a time-out's bootstrap is in the reward instead);
* ``discounts``: ``γ^n`` for a decision of ``n`` env steps (``γ`` for one-step decisions).

    δ_t = r_t + d_t · (1 − done_t) · V_{t+1} − V_t
    A_t = δ_t + d_t · λ · (1 − done_t) · A_{t+1},      returns R_t = A_t + V_t
"""

from __future__ import annotations

import torch


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_values: torch.Tensor,
    discounts: torch.Tensor | float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns ``(T, N)`` each; ``last_values`` ``(N,)`` is V of the state after
    the last decision."""
    steps = rewards.shape[0]
    if not torch.is_tensor(discounts):
        discounts = torch.full_like(rewards, float(discounts))
    not_done = 1.0 - dones.float()
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(last_values)
    next_value = last_values
    for t in reversed(range(steps)):
        carry = discounts[t] * not_done[t]
        delta = rewards[t] + carry * next_value - values[t]
        next_adv = delta + carry * lam * next_adv
        advantages[t] = next_adv
        next_value = values[t]
    return advantages, advantages + values
