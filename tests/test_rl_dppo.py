"""DPPO's diffusion-chain actor (METHODS.md §4): ratio ≡ 1, K' = 0 changes nothing, the
deterministic mode is the exported policy, the schedules, the checkpoint round trip, a PPO step
that favours positively-advantaged chains, and a short ``robolearn-rl rl=dppo`` run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import default_collate

from robolearn.checkpoint import load_policy, read_spec, save_checkpoint
from robolearn.cli import rl as rl_cli
from robolearn.data.collect import collect
from robolearn.data.dataset import DemoDataset, WindowConfig
from robolearn.data.normalizer import Normalizer
from robolearn.policies.denoisers import UnetConfig
from robolearn.policies.diffusion import DiffusionConfig, DiffusionPolicy
from robolearn.policies.edm import EDMConfig, EDMPolicy, MLPConfig
from robolearn.rl.critic import Critic
from robolearn.rl.dppo import DiffusionChainActor, DPPOConfig, clip_schedule, make_actor
from robolearn.rl.ppo import PPO, RLConfig
from robolearn.rl.storage import RolloutStorage
from robolearn.spec import ActionSpec, ObsSpec, TermSpec
from robolearn.utils.config import from_dict

CONF = Path(__file__).parents[1] / "conf" / "rl"
ACTION_DIM, HORIZON, N_OBS, N_ACT, BATCH = 2, 4, 2, 2, 16
SPEC = ObsSpec(
    terms={"state": TermSpec((3,))},
    groups={"policy": ("state",)},
    action=ActionSpec(dim=ACTION_DIM, low=-0.5, high=0.5),
)


def normalizer() -> Normalizer:
    rng = np.random.default_rng(0)
    return Normalizer.fit(
        {"state": rng.uniform(-2, 2, (64, 3)), "action": rng.uniform(-1, 1, (64, ACTION_DIM))}
    )


def make_policy(kind: str) -> EDMPolicy | DiffusionPolicy:
    common = dict(n_obs_steps=N_OBS, horizon=HORIZON, n_action_steps=N_ACT)
    if kind == "edm":
        cfg = EDMConfig(**common, denoiser="mlp", mlp=MLPConfig(hidden_dim=32, num_blocks=1))
        return EDMPolicy(cfg, SPEC, normalizer()).eval()
    unet = UnetConfig(down_dims=(16, 32), time_embed_dim=16)
    cfg = DiffusionConfig(**common, unet=unet, num_inference_steps=5)
    return DiffusionPolicy(cfg, SPEC, normalizer()).eval()


def observations(batch: int = BATCH) -> dict[str, torch.Tensor]:
    return {"state": torch.randn(batch, N_OBS, 3)}


def actor_for(policy, ft_steps: int | None = None) -> DiffusionChainActor:
    return DiffusionChainActor.from_policy(policy, DPPOConfig(ft_steps=ft_steps)).eval()


@torch.no_grad()
def perturb(module: torch.nn.Module, scale: float = 0.05) -> None:
    """Move every weight, so that a test can tell the fine-tuned network from the original."""
    for p in module.parameters():
        p.add_(scale * torch.randn_like(p))


def seeded(fn, seed: int = 7):
    torch.manual_seed(seed)
    return fn()


def ppo_step(actor: DiffusionChainActor, obs, stored, advantages: torch.Tensor) -> None:
    """One PPO update (one epoch, one minibatch) of the trainer's PPO on a given rollout."""
    cfg = RLConfig(num_epochs=1, num_minibatches=1, lr=1e-5, schedule="fixed", entropy_coef=0.0)
    critic = Critic(SPEC, hidden_dims=(8,))
    storage = RolloutStorage(1, advantages.shape[0], "cpu")
    critic_obs = obs["state"][:, -1]
    zeros = torch.zeros_like(advantages)
    storage.add(obs, critic_obs, stored, zeros, zeros, zeros.bool(), zeros + 1)
    storage.advantages, storage.returns = advantages[None], zeros[None]
    PPO(actor, critic, cfg).update(storage)


KINDS_AND_STEPS = [("edm", None), ("edm", 1), ("diffusion", None), ("diffusion", 2)]


@pytest.mark.parametrize(("kind", "ft_steps"), KINDS_AND_STEPS)
def test_chain_log_probs_under_unchanged_weights_give_ratio_one(kind, ft_steps):
    actor = actor_for(make_policy(kind), ft_steps)
    obs = observations()
    _, stored = actor.act(obs)
    k = actor.ft_steps
    assert stored["log_prob"].shape == (BATCH, k)
    assert stored["chain"].shape == (BATCH, k + 1, HORIZON, ACTION_DIM)
    new, entropy = actor.log_prob(obs, stored)
    assert entropy is None
    assert torch.equal(new, stored["log_prob"])  # same batch: bit for bit
    # A shuffled half-size minibatch, as in the update: float32 kernels may round differently
    # for another batch size (the U-Net's convolutions do, by ~1e-7 in a step's mean, which a
    # chunk log-prob with σ = 0.1 turns into ~1e-5); the MLP's matmuls stay within 1e-6.
    half = torch.randperm(BATCH)[: BATCH // 2]
    sub, _ = actor.log_prob({"state": obs["state"][half]}, {k: v[half] for k, v in stored.items()})
    ratio = (sub - stored["log_prob"][half]).exp()
    atol = 1e-6 if kind == "edm" else 1e-4
    torch.testing.assert_close(ratio, torch.ones_like(ratio), atol=atol, rtol=0)


@pytest.mark.parametrize("kind", ["edm", "diffusion"])
def test_zero_finetuned_steps_changes_nothing(kind):
    policy = make_policy(kind)
    actor = actor_for(policy, ft_steps=0)
    assert not any(p.requires_grad for p in actor.parameters())
    assert actor.clip_eps.shape == actor.advantage_weights.shape == (0,)
    obs = observations()
    actions, stored = seeded(lambda: actor.act(obs))  # stochastic mode: still the base sampler
    base = seeded(lambda: policy.predict_action(obs))
    torch.testing.assert_close(actions, base[:, :N_ACT], atol=0, rtol=0)
    assert stored["log_prob"].shape == (BATCH, 0)
    before = {k: v.clone() for k, v in actor.state_dict().items()}
    ppo_step(actor, obs, stored, torch.randn(BATCH))
    after = actor.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(("kind", "ft_steps"), KINDS_AND_STEPS)
def test_deterministic_mode_is_the_exported_policy(kind, ft_steps):
    actor = actor_for(make_policy(kind), ft_steps)
    perturb(actor.policy.finetuned)
    obs = observations()
    actions, _ = seeded(lambda: actor.act(obs, deterministic=True))
    exported = actor.export_policy()
    expected = seeded(lambda: exported.predict_action(obs))[:, :N_ACT]
    torch.testing.assert_close(actions, expected, atol=0, rtol=0)
    assert actions.abs().max() <= 0.5  # env units, clipped to the bounds
    # ... and it is not the base policy's: the fine-tuned network runs the last steps
    base = seeded(lambda: make_policy(kind).predict_action(obs))[:, :N_ACT]
    assert not torch.allclose(actions, base)


def test_exported_policy_keeps_one_network_when_all_steps_are_finetuned():
    full = actor_for(make_policy("edm")).export_policy()
    assert full.cfg.finetuned_steps == 0 and full.finetuned is None
    part = actor_for(make_policy("edm"), ft_steps=1).export_policy()
    assert part.cfg.finetuned_steps == 1 and part.finetuned is not None


def test_a_partly_fine_tuned_policy_fine_tunes_the_same_steps_again():
    first = actor_for(make_policy("edm"), ft_steps=1)
    perturb(first.policy.finetuned)
    again = actor_for(first.export_policy(), ft_steps=1)
    assert again.ft_steps == 1
    kept, trained = again.policy.finetuned.state_dict(), first.policy.finetuned.state_dict()
    assert all(torch.equal(kept[k], trained[k]) for k in trained)
    with pytest.raises(ValueError, match="already fine-tunes its last 1 denoising steps"):
        actor_for(first.export_policy(), ft_steps=2)


def test_clip_schedule_and_advantage_weights():
    actor = actor_for(make_policy("edm"))  # N = K' = 3
    clip = actor.clip_eps
    assert clip.shape == (3,)
    torch.testing.assert_close(clip[[0, -1]], torch.tensor([0.001, 0.01]))
    assert clip[0] < clip[1] < clip[2]
    # DPPO's exponential growth (rate 3): the middle step is far below the linear midpoint
    assert clip[1] < (0.001 + 0.01) / 2
    torch.testing.assert_close(
        clip_schedule(3, 0.001, 0.01, 0.0), torch.tensor([0.001, 0.0055, 0.01])
    )
    torch.testing.assert_close(actor.advantage_weights, torch.tensor([0.99**2, 0.99, 1.0]))
    one = actor_for(make_policy("edm"), ft_steps=1)
    torch.testing.assert_close(one.clip_eps, torch.tensor([0.01]))
    torch.testing.assert_close(one.advantage_weights, torch.tensor([1.0]))


@pytest.mark.parametrize(("kind", "ft_steps"), KINDS_AND_STEPS)
def test_export_checkpoint_round_trip(tmp_path, kind, ft_steps):
    actor = actor_for(make_policy(kind), ft_steps)
    perturb(actor.policy.finetuned)
    obs = observations()
    actions, _ = seeded(lambda: actor.act(obs, deterministic=True))
    policy = actor.export_policy()
    config = {"policy": {"name": policy.name}}
    loaded = load_policy(save_checkpoint(tmp_path / "ckpt", policy, config=config))
    torch.testing.assert_close(seeded(lambda: loaded.predict_action(obs))[:, :N_ACT], actions)


@pytest.mark.parametrize("kind", ["edm", "diffusion"])
def test_ppo_step_raises_log_prob_of_positively_advantaged_chains(kind):
    actor = actor_for(make_policy(kind))
    obs = observations(64)
    _, stored = actor.act(obs)
    advantages = torch.tensor([1.0, -1.0]).repeat(32)
    ppo_step(actor, obs, stored, advantages)
    new, _ = actor.log_prob(obs, stored)
    change = (new - stored["log_prob"]).sum(-1)
    assert change[advantages > 0].mean() > 0 > change[advantages < 0].mean()


def test_config_files_and_errors():
    dppo = OmegaConf.load(CONF / "dppo.yaml")
    assert list(dppo.pop("defaults")) == ["ppo", "_self_"]
    data = OmegaConf.to_container(OmegaConf.merge(OmegaConf.load(CONF / "ppo.yaml"), dppo))
    rl = from_dict(RLConfig, data)
    assert from_dict(DPPOConfig, rl.actor) == DPPOConfig()  # the yaml lists the defaults
    assert (rl.name, rl.lr, rl.critic_lr, rl.gamma) == ("dppo", 1e-5, 1e-3, 0.999)
    assert rl.critic_warmup_iters == 2 and rl.entropy_coef == 0 and rl.demo_reg_coef == 0
    with pytest.raises(ValueError, match="rl.actor.ft_steps=4 exceeds"):
        make_actor(make_policy("edm"), RLConfig(actor={"ft_steps": 4}))
    with pytest.raises(ValueError, match="unknown config key 'rl.actor.ft'"):
        make_actor(make_policy("edm"), RLConfig(actor={"ft": 1}))
    ddpm = DiffusionPolicy(
        DiffusionConfig(sampler="ddpm", horizon=HORIZON, n_action_steps=N_ACT), SPEC, normalizer()
    )
    with pytest.raises(ValueError, match="sampler 'ddim'"):
        actor_for(ddpm)


# --- robolearn-rl rl=dppo end to end -------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_edm_checkpoint(tmp_path_factory) -> Path:
    """A small EDM policy trained for 200 steps on 4 scripted ``reach`` demos."""
    root = tmp_path_factory.mktemp("edm")
    collect("reach", 4, root / "reach.hdf5", num_envs=4, progress=False)
    data = DemoDataset(root / "reach.hdf5", window=WindowConfig(n_obs_steps=2, horizon=8))
    batch = default_collate([data[i] for i in range(len(data))])
    cfg = EDMConfig(horizon=8, n_action_steps=4, denoiser="mlp", mlp=MLPConfig(64, 2))
    policy = EDMPolicy(cfg, data.spec, Normalizer.fit(data.stats_arrays()))
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    for _ in range(200):
        index = torch.randint(len(batch["action"]), (64,))
        loss, _ = policy.compute_loss(
            {
                "obs": {k: v[index] for k, v in batch["obs"].items()},
                "action": batch["action"][index],
                "action_mask": batch["action_mask"][index],
            }
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return save_checkpoint(root / "ckpt", policy.eval(), config={"policy": {"name": "edm"}})


def test_dppo_fine_tune_cli_writes_a_loadable_checkpoint(
    tmp_path, monkeypatch, tiny_edm_checkpoint
):
    run_dir = tmp_path / "run"
    overrides = [
        "rl=dppo",
        f"init={tiny_edm_checkpoint}",
        "task=reach",
        "num_envs=8",
        "total_env_steps=1000",
        "rl.num_steps=8",
        "rl.critic_warmup_iters=1",
        "rl.critic_hidden_dims=[32]",
        "rl.actor.ft_steps=2",
        "eval.num_episodes=0",
        "logger=none",
        "progress=false",
        f"hydra.run.dir={run_dir}",
    ]
    monkeypatch.setattr(sys, "argv", [rl_cli.PROG, *overrides])
    try:
        rl_cli.main()
    except SystemExit as e:
        assert e.code in (0, None)
    policy = load_policy(run_dir)
    assert policy.name == "edm" and policy.cfg.finetuned_steps == 2
    assert read_spec(run_dir)["policy"]["config"]["finetuned_steps"] == 2
    # the fine-tuned steps moved away from the pretrained network; the early step did not
    base = load_policy(tiny_edm_checkpoint)
    assert not torch.equal(policy.finetuned.output[1].weight, base.model.output[1].weight)
    assert torch.equal(policy.model.output[1].weight, base.model.output[1].weight)


def test_dppo_refuses_a_demo_bc_loss_at_start(tmp_path, monkeypatch, capsys, tiny_edm_checkpoint):
    """The denoising-chain actor has no BC loss on demo batches: refused before any rollout."""
    overrides = [
        "rl=dppo",
        f"init={tiny_edm_checkpoint}",
        "task=reach",
        "num_envs=2",
        f"rl.demo_dataset={tmp_path / 'demos.hdf5'}",
        "rl.demo_bc_coef=0.5",
        "logger=none",
        "progress=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    monkeypatch.setattr(sys, "argv", [rl_cli.PROG, *overrides])
    with pytest.raises(SystemExit) as exit_info:
        rl_cli.main()
    assert exit_info.value.code == 2
    assert "has no BC loss on demo batches" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()
