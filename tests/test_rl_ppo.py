"""PPO pieces (METHODS.md §3): GAE with time-out bootstrapping, the semi-MDP of ``n_exec > 1``,
ratio ≡ 1, KL to π_BC, demonstration regularisation, and a learning test from scratch."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from robolearn.envs.vec_env import VecEnv
from robolearn.policies.base import PolicyConfig
from robolearn.rl.build import frozen_reference, make_actor, scratch_policy
from robolearn.rl.critic import Critic, RunningMeanStd
from robolearn.rl.gae import compute_gae
from robolearn.rl.gaussian_actor import GaussianActor
from robolearn.rl.ppo import PPO, DivergenceError, RLConfig, ScratchPolicyConfig
from robolearn.rl.runner import NonFiniteEnvError, PPORunner


def small_cfg(**kw) -> RLConfig:
    base = dict(num_steps=8, critic_hidden_dims=(32, 32))
    base["scratch"] = ScratchPolicyConfig(hidden_dims=(32, 32), reset_samples=64)
    return RLConfig(**{**base, **kw})


def make_runner(tmp_path: Path, cfg: RLConfig, num_envs: int = 8, warm: bool = True):
    env = VecEnv("reach", num_envs, seed=0)
    actor = make_actor(scratch_policy(env, cfg, seed=0), cfg)
    reference = frozen_reference(actor) if warm else None
    critic = Critic(env.spec, None, cfg.critic_hidden_dims)
    runner = PPORunner(
        env,
        actor,
        critic,
        cfg,
        total_env_steps=10**9,
        reference=reference,
        run_dir=tmp_path,
        config={"task": {"name": "reach"}},
        warm_start=warm,
        progress=False,
    )
    runner.actor.eval()
    runner.reset_envs()
    return runner


# --- GAE --------------------------------------------------------------------------------------
def test_gae_matches_hand_computation_with_timeout_and_termination():
    g, lam = 0.9, 0.8
    # World 0: step 1 times out (its reward already holds r + γ·V(final_obs) = 1 + 0.9·5).
    # World 1: step 0 terminates (no bootstrap at all).
    rewards = torch.tensor([[1.0, 2.0], [1.0 + g * 5.0, 0.5], [0.0, 1.0]])
    dones = torch.tensor([[False, True], [True, False], [False, False]])
    values = torch.tensor([[3.0, 1.0], [4.0, 2.0], [6.0, 1.5]])
    last = torch.tensor([7.0, 3.0])
    adv, ret = compute_gae(rewards, values, dones, last, g, lam)

    # world 0, by hand
    d2 = 0.0 + g * 7.0 - 6.0
    d1 = (1.0 + g * 5.0) - 4.0  # done: no V_{t+1}
    d0 = 1.0 + g * 4.0 - 3.0
    a2, a1 = d2, d1
    a0 = d0 + g * lam * a1
    # world 1
    e2 = 1.0 + g * 3.0 - 1.5
    e1 = 0.5 + g * 1.5 - 2.0
    e0 = 2.0 - 1.0  # terminated
    b2, b1 = e2, e1 + g * lam * e2
    b0 = e0
    expected = torch.tensor([[a0, b0], [a1, b1], [a2, b2]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)


# --- the semi-MDP of n_exec > 1 ---------------------------------------------------------------
class StepEnv:
    """Two worlds; the reward of global step ``t`` (1-based) is ``t``. World 0's episodes time
    out after 5 steps; world 1's terminate after 2. Records the actions it gets."""

    def __init__(self):
        self.num_envs, self.device = 2, torch.device("cpu")
        self.generator = torch.Generator().manual_seed(0)
        self.t = 0
        self.ep_len = torch.zeros(2, dtype=torch.long)
        self.actions: list[torch.Tensor] = []

    def _obs(self):
        x = self.ep_len.float()[:, None]
        return {"policy": {"x": x.clone()}, "critic": {"x": x.clone()}}

    def reset(self, seed=None):
        self.ep_len.zero_()
        return self._obs(), {}

    def step(self, action):
        self.actions.append(action.clone())
        self.t += 1
        self.ep_len += 1
        reward = torch.full((2,), float(self.t))
        terminated = torch.tensor([False, bool(self.ep_len[1] >= 2)])
        truncated = torch.tensor([bool(self.ep_len[0] >= 5), False])
        obs = self._obs()
        info = {"success": torch.zeros(2, dtype=torch.bool)}
        done = terminated | truncated
        if done.any():
            ids = done.nonzero().squeeze(-1)
            info["final_obs"] = obs
            info["episode"] = {
                "env_ids": ids,
                "return": torch.zeros(len(ids)),
                "length": self.ep_len[ids].clone(),
                "success": torch.zeros(len(ids), dtype=torch.bool),
            }
            self.ep_len[ids] = 0
            obs = self._obs()
        return obs, reward, terminated, truncated, info


class ChunkActor(nn.Module):
    """Executes chunks of 3 ones; one dummy choice."""

    n_exec, n_obs_steps, obs_keys = 3, 1, ("x",)

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    clip_eps = torch.full((1,), 0.2)
    advantage_weights = torch.ones(1)

    def act(self, obs, deterministic=False):
        b = obs["x"].shape[0]
        return torch.ones(b, 3, 1), {"log_prob": torch.zeros(b, 1) + self.w}

    def log_prob(self, obs, stored):
        return torch.zeros(obs["x"].shape[0], 1) + self.w, None

    def export_policy(self):
        raise NotImplementedError


class ConstCritic(Critic):
    def forward(self, flat_obs):
        return torch.full((flat_obs.shape[0],), 10.0)


def test_semi_mdp_reward_accumulation_with_episode_ending_mid_chunk(tmp_path):
    g = 0.5
    spec = SimpleNamespace(terms={"x": SimpleNamespace(shape=(1,))}, groups={"critic": ("x",)})
    env = StepEnv()
    cfg = RLConfig(num_steps=2, gamma=g)
    runner = PPORunner(
        env,
        ChunkActor(),
        ConstCritic(spec),
        cfg,
        total_env_steps=10**6,
        run_dir=tmp_path,
        config={},
        progress=False,
    )
    runner.reset_envs()
    runner.collect()
    s = runner.storage
    # Decision 1 (global steps 1..3). World 0: 1 + g·2 + g²·3. World 1 terminates at step 2:
    # 1 + g·2; step 3 (zero action, its next episode) is attributed to nothing.
    # Decision 2 (steps 4..6). World 0 times out at step 5 (2 steps taken): 4 + g·5 + g²·V.
    # World 1's new episode began at step 3 and terminates at step 4: reward 4 only.
    expected = torch.tensor([[1 + g * 2 + g**2 * 3, 1 + g * 2], [4 + g * 5 + g**2 * 10.0, 4.0]])
    torch.testing.assert_close(s.rewards, expected)
    assert s.dones.tolist() == [[False, True], [True, True]]
    torch.testing.assert_close(s.discounts, torch.full((2, 2), g**3))
    acts = torch.stack(env.actions)[:, :, 0]  # (6 steps, 2 worlds)
    assert acts[:, 0].tolist() == [1, 1, 1, 1, 1, 0]
    assert acts[:, 1].tolist() == [1, 1, 0, 1, 0, 0]
    assert runner.env_steps == 12


# --- ratio, KL to π_BC, regularisation ----------------------------------------------------------
def test_ratio_is_one_on_first_minibatch(tmp_path):
    runner = make_runner(tmp_path, small_cfg())
    runner.collect()
    mb = next(runner.storage.minibatches(4))
    new, entropy = runner.actor.log_prob(mb["obs"], mb["stored"])
    torch.testing.assert_close(new, mb["stored"]["log_prob"], rtol=0, atol=1e-6)
    assert entropy is not None and entropy.shape == (new.shape[0],)
    # and through the update: its first minibatch sees ratio 1 (approx KL 0 before any step)
    stats = runner.ppo._step(
        mb, True, True, runner.actor.clip_eps, runner.actor.advantage_weights, None
    )
    assert stats["ratio_mean"] == pytest.approx(1.0, abs=1e-6)
    assert stats["approx_kl"] == pytest.approx(0.0, abs=1e-7)


def test_an_update_that_diverges_midway_is_undone(tmp_path, monkeypatch):
    """Minibatches applied before the non-finite one are rolled back: a checkpoint saved on the
    error holds the state the last good iteration left."""
    runner = make_runner(tmp_path, small_cfg(critic_warmup_iters=0, warm_start_lr=1e-3))
    runner.collect()
    ppo = runner.ppo
    before = {k: v.clone() for k, v in runner.actor.state_dict().items()}
    critic_before = {k: v.clone() for k, v in runner.critic.state_dict().items()}
    real_step, calls = ppo._step, {"n": 0}

    def diverges_on_the_third(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise DivergenceError("the PPO loss is nan")
        return real_step(*args)

    monkeypatch.setattr(ppo, "_step", diverges_on_the_third)
    with pytest.raises(DivergenceError):
        ppo.update(runner.storage)
    assert calls["n"] == 3  # two minibatches were applied, then undone:
    for k, v in runner.actor.state_dict().items():
        assert torch.equal(v, before[k]), k
    for k, v in runner.critic.state_dict().items():
        assert torch.equal(v, critic_before[k]), k
    assert ppo.optimizer.state_dict()["state"] == {} and ppo.lr == 1e-3


def test_the_last_iteration_is_logged_whatever_log_every(tmp_path):
    runner = make_runner(tmp_path, small_cfg(log_every=5), num_envs=8)
    logged: list[int] = []
    runner.logger = SimpleNamespace(log=lambda scalars, step: logged.append(step))
    runner.total_env_steps = 2 * 8 * 8  # two iterations of 8 worlds x 8 steps
    runner.learn()
    assert logged == [128]


def test_kl_to_bc_is_zero_at_init_and_grows_after_updates(tmp_path):
    runner = make_runner(tmp_path, small_cfg(demo_reg_coef=0.0, warm_start_lr=1e-3))
    runner.collect()
    obs = next(runner.storage.minibatches(1))["obs"]
    kl = runner.actor.kl_to(runner.reference, obs)
    assert kl.abs().max().item() == 0.0
    runner.ppo.update(runner.storage)
    assert runner.actor.kl_to(runner.reference, obs).mean().item() > 1e-4


def test_deterministic_head_gets_a_learned_log_std():
    env = VecEnv("reach", 2)
    cfg = small_cfg(init_std=0.3)
    policy = scratch_policy(env, cfg)
    det = type(policy)(
        type(policy.cfg)(**{**policy.cfg.__dict__, "head": "deterministic"}),
        policy.spec,
        policy.normalizer,
    )
    actor = GaussianActor(det, init_std=0.3, min_std=0.01)
    obs = {k: v[:, None] for k, v in env.reset()[0]["policy"].items()}
    dist = actor.distribution(obs)
    torch.testing.assert_close(dist.stddev, torch.full_like(dist.stddev, 0.3))
    assert actor.log_std.requires_grad
    assert actor.export_policy() is det


def kl_after_updates(tmp_path, coef: float) -> float:
    torch.manual_seed(0)
    cfg = small_cfg(demo_reg_coef=coef, demo_reg_decay=1.0, warm_start_lr=1e-3, schedule="fixed")
    runner = make_runner(tmp_path, cfg)
    for _ in range(3):
        runner.collect()
        runner.ppo.update(runner.storage)
    runner.collect()
    obs = next(runner.storage.minibatches(1))["obs"]
    with torch.no_grad():
        return runner.actor.kl_to(runner.reference, obs).mean().item()


def test_huge_demo_regularisation_keeps_the_actor_at_bc(tmp_path):
    free = kl_after_updates(tmp_path / "free", 0.0)
    pinned = kl_after_updates(tmp_path / "pinned", 1e6)
    assert free > 1e-3
    assert pinned < 1e-2 * free


def test_critic_warmup_freezes_the_actor(tmp_path):
    runner = make_runner(tmp_path, small_cfg(critic_warmup_iters=1))
    before = [p.clone() for p in runner.actor.parameters()]
    critic_before = [p.clone() for p in runner.critic.parameters()]
    runner.collect()
    runner.ppo.update(runner.storage, update_actor=False)
    assert all(torch.equal(a, b) for a, b in zip(before, runner.actor.parameters(), strict=True))
    assert not all(
        torch.equal(a, b) for a, b in zip(critic_before, runner.critic.parameters(), strict=True)
    )


def test_running_mean_std_matches_batch_statistics():
    rms = RunningMeanStd(3)
    x = torch.randn(1000, 3) * torch.tensor([1.0, 5.0, 0.1]) + 2.0
    for chunk in x.split(137):
        rms.update(chunk)
    torch.testing.assert_close(rms.mean, x.mean(0), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(rms.var, x.var(0, unbiased=False), atol=1e-3, rtol=1e-3)


def test_diffusion_kinds_route_to_dppo(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "robolearn.rl.dppo", None)  # as if it did not exist
    with pytest.raises(ValueError, match="DPPO"):
        make_actor(SimpleNamespace(name="edm", cfg=PolicyConfig()), RLConfig())


def test_ppo_optimizer_groups():
    env = VecEnv("reach", 2)
    cfg = small_cfg(critic_lr=5e-4)
    actor = make_actor(scratch_policy(env, cfg), cfg)
    ppo = PPO(actor, Critic(env.spec, None, (8,)), cfg, reference=frozen_reference(actor))
    assert ppo.lr == cfg.warm_start_lr
    assert [g["lr"] for g in ppo.optimizer.param_groups] == [cfg.warm_start_lr, 5e-4]
    # A fixed schedule never raises the warm-start rate: there the actor trains at rl.lr.
    fixed = small_cfg(schedule="fixed", lr=3e-5)
    ppo = PPO(actor, Critic(env.spec, None, (8,)), fixed, reference=frozen_reference(actor))
    assert ppo.lr == ppo.optimizer.param_groups[0]["lr"] == 3e-5


def test_a_diverged_world_final_obs_may_be_non_finite_but_a_live_one_may_not(tmp_path):
    """Warp leaves a diverged world's state non-finite; the env ends that episode by contract."""
    runner = make_runner(tmp_path, small_cfg(), num_envs=4)
    obs, _ = runner.env.reset()
    final = {g: {k: x.clone() for k, x in terms.items()} for g, terms in obs.items()}
    final["policy"]["eef_pos"][1] = float("nan")
    diverged = torch.tensor([False, True, False, False])
    runner._check_finite(obs, None, {"final_obs": final, "diverged": diverged})
    with pytest.raises(NonFiniteEnvError, match=r"final_obs\['policy'\]\['eef_pos'\].*\[1\]"):
        runner._check_finite(obs, None, {"final_obs": final, "diverged": ~diverged})


# --- learning ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_ppo_from_scratch_learns_reach(tmp_path):
    """A test that can fail: the mean episode return on dense ``reach`` rises clearly."""
    torch.manual_seed(0)
    env = VecEnv("reach", 64, seed=0)
    cfg = RLConfig(
        num_steps=24,
        critic_hidden_dims=(64, 64),
        scratch=ScratchPolicyConfig(hidden_dims=(64, 64), reset_samples=256),
    )
    actor = make_actor(scratch_policy(env, cfg), cfg)
    returns: list[float] = []

    class Track:
        def after_update(self, runner, stats):
            if "return" in stats:
                returns.append(stats["return"])

    runner = PPORunner(
        env,
        actor,
        Critic(env.spec, None, cfg.critic_hidden_dims),
        cfg,
        total_env_steps=80_000,
        run_dir=tmp_path,
        config={"task": {"name": "reach"}},
        progress=False,
        callbacks=[Track()],
    )
    result = runner.learn()
    assert result.status == "done"
    first, last = sum(returns[:3]) / 3, sum(returns[-3:]) / 3
    assert last > first + 5.0, returns  # returns are in [0, 60]


# --- observation conditioning and threads -----------------------------------------------------
def test_obs_clip_bounds_features_and_travels_with_the_exported_policy(tmp_path):
    from robolearn.checkpoint import load_policy

    runner = make_runner(tmp_path, small_cfg(obs_clip=0.5))
    policy = runner.actor.export_policy()
    assert policy.cfg.obs_clip == 0.5
    window = {k: v.clone() for k, v in runner.history.items()}
    window["eef_pos"] = window["eef_pos"] + 1.0  # 1 m off the reset states: features of ~20
    clipped = policy.encode(window)
    raw = policy.encoder(window).flatten(1)
    assert raw.abs().max() > 0.5  # the test can fail: some features exceed the clip
    torch.testing.assert_close(clipped, raw.clamp(-0.5, 0.5))
    loaded = load_policy(runner.save(), "cpu")
    assert loaded.cfg.obs_clip == 0.5
    torch.testing.assert_close(loaded.encode(window), clipped)


def test_update_threads_are_restored_after_the_update():
    from robolearn.rl.runner import torch_threads

    before = torch.get_num_threads()
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before


def test_an_entropy_bonus_alone_cannot_push_a_fresh_actors_std_past_its_ceiling():
    """Actions are clipped to [-1, 1] (normalised), so std beyond ``scratch.max_std`` is entropy
    for nothing; with the old ceiling of e^2 an unopposed bonus drove every dim there."""
    env = VecEnv("reach", 4, seed=0)
    obs = {k: v[:, None] for k, v in env.reset()[0]["policy"].items()}
    for max_std in (1.0, 7.0):
        cfg = small_cfg(
            scratch=ScratchPolicyConfig(hidden_dims=(32, 32), reset_samples=8, max_std=max_std)
        )
        actor = make_actor(scratch_policy(env, cfg, seed=0), cfg)
        opt = torch.optim.Adam(actor.parameters(), lr=1e-2)
        for _ in range(300):
            opt.zero_grad()
            (-actor.distribution(obs).entropy().sum(-1).mean()).backward()
            opt.step()
        std = actor.distribution(obs).stddev
        assert std.max().item() <= max_std + 1e-6
        assert std.min().item() > 0.9 * max_std  # the bonus does reach the ceiling


def test_a_fresh_actor_refuses_an_initial_std_above_its_ceiling():
    cfg = small_cfg(init_std=1.5, scratch=ScratchPolicyConfig(hidden_dims=(32, 32), max_std=1.0))
    with pytest.raises(ValueError, match="init_std.*max_std"):
        scratch_policy(VecEnv("reach", 2), cfg)
