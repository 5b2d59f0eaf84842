"""Checkpoint format: round trip, EMA, atomic writes, ``last`` pointer, clear errors, resume state."""

from __future__ import annotations

import copy
import dataclasses
import json
import random

import numpy as np
import pytest
import torch
from torch import nn

import robolearn
from robolearn import checkpoint
from robolearn.checkpoint import (
    capture_rng_state,
    check_policy_env_compatible,
    load_policy,
    load_training_state,
    resolve_checkpoint,
    restore_rng_state,
    save_checkpoint,
    update_pointer,
)
from robolearn.data.normalizer import Normalizer
from robolearn.policies import Policy, PolicyConfig
from robolearn.spec import ActionSpec, ObsSpec, TermSpec


class TinyPolicy(Policy):
    """Smallest real :class:`Policy`: a linear map from the observation window to a chunk."""

    name = "tiny"

    def __init__(self, cfg: PolicyConfig, spec: ObsSpec, normalizer: Normalizer):
        super().__init__(cfg, spec, normalizer)
        self.net = nn.Linear(self.obs_feature_dim, cfg.horizon * self.action_dim)

    def compute_loss(self, batch):
        pred = self.sample_normalized(self.encode(batch["obs"]))
        loss = (pred - self.normalized_actions(batch)).pow(2).mean()
        return loss, {"loss": loss.item()}

    def sample_normalized(self, obs_features):
        return torch.tanh(self.net(obs_features)).view(-1, self.cfg.horizon, self.action_dim)


SPEC = ObsSpec(
    terms={"eef_pos": TermSpec((3,)), "target_pos": TermSpec((3,))},
    groups={"policy": ("eef_pos", "target_pos")},
    action=ActionSpec(dim=4),
    task="toy",
)
CFG = PolicyConfig(n_obs_steps=2, horizon=4, n_action_steps=2)


@pytest.fixture(autouse=True)
def _register_tiny(monkeypatch):
    monkeypatch.setitem(robolearn.policies._POLICIES, "tiny", f"{__name__}:TinyPolicy")


def make_policy() -> TinyPolicy:
    g = torch.Generator().manual_seed(1)
    data = {k: torch.randn(64, 3, generator=g).numpy() for k in SPEC.groups["policy"]}
    data["action"] = (torch.rand(64, 4, generator=g) * 2 - 1).numpy()
    return TinyPolicy(CFG, SPEC, Normalizer.fit(data))


def obs_window(batch: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return {k: torch.randn(batch, CFG.n_obs_steps, 3, generator=g) for k in SPEC.groups["policy"]}


def config() -> dict:
    return {"policy": {"name": "tiny", "n_obs_steps": 2, "horizon": 4}, "task": {"name": "toy"}}


def test_round_trip_gives_identical_actions(tmp_path):
    policy = make_policy()
    ckpt = save_checkpoint(tmp_path / "ckpt", policy, config=config())
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "config.yaml",
        "model.safetensors",
        "spec.json",
    ]
    meta = json.loads((ckpt / "spec.json").read_text())
    assert meta["policy"] == {"name": "tiny", "config": json.loads(json.dumps(CFG.__dict__))}
    assert meta["robolearn_version"] == robolearn.__version__
    assert checkpoint.load_config(ckpt) == config()

    loaded = robolearn.load_policy(ckpt)
    assert isinstance(loaded, TinyPolicy) and not loaded.training
    assert loaded.spec == SPEC and loaded.cfg == CFG
    torch.testing.assert_close(
        loaded.predict_action(obs_window()), policy.predict_action(obs_window()), rtol=0, atol=0
    )


def test_ema_weights_are_chosen_when_present(tmp_path):
    policy = make_policy()
    ema = copy.deepcopy(policy)
    with torch.no_grad():
        ema.net.weight.mul_(0.5)
    ckpt = save_checkpoint(
        tmp_path / "ckpt", policy, ema=torch.optim.swa_utils.AveragedModel(ema), config=config()
    )
    window = obs_window()
    torch.testing.assert_close(load_policy(ckpt).predict_action(window), ema.predict_action(window))
    torch.testing.assert_close(
        load_policy(ckpt, use_ema=False).predict_action(window), policy.predict_action(window)
    )


def test_config_changes_rebuild_the_policy_with_the_same_weights(tmp_path):
    policy = make_policy()
    ckpt = save_checkpoint(tmp_path / "ckpt", policy, config=config())
    changed = load_policy(ckpt, config_changes={"n_action_steps": 1})
    assert changed.cfg == dataclasses.replace(CFG, n_action_steps=1)
    torch.testing.assert_close(
        changed.predict_action(obs_window()), policy.predict_action(obs_window())
    )
    with pytest.raises(ValueError, match="'n_action_step'.*no such setting"):
        load_policy(ckpt, config_changes={"n_action_step": 1})
    with pytest.raises(ValueError, match="policy.n_action_steps.*integer"):
        load_policy(ckpt, config_changes={"n_action_steps": "two"})
    with pytest.raises(ValueError, match="does not fit policy 'tiny' with config changes"):
        load_policy(ckpt, config_changes={"horizon": 8, "n_action_steps": 2})  # another net


def test_failed_save_leaves_no_checkpoint_and_last_intact(tmp_path, monkeypatch):
    run = tmp_path / "run"
    first = save_checkpoint(run / "checkpoints" / "step_1", make_policy(), config=config())
    update_pointer(run, first)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the training state is being written

    monkeypatch.setattr(checkpoint.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(
            run / "checkpoints" / "step_2",
            make_policy(),
            config=config(),
            training_state={"step": 2, "optimizer": {}},
        )
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_1"]  # no temp left
    assert resolve_checkpoint(run) == run / "checkpoints" / "step_1"


def test_resolve_follows_the_pointers_of_a_run_dir(tmp_path):
    run, policy = tmp_path / "run", make_policy()
    for step in (1, 2):
        ckpt = save_checkpoint(run / "checkpoints" / f"step_{step}", policy, config=config())
        update_pointer(run, ckpt)
    assert (run / "last").read_text().strip() == "checkpoints/step_2"
    assert resolve_checkpoint(run) == run / "checkpoints" / "step_2"
    assert isinstance(load_policy(run), TinyPolicy)
    # Saving over an existing checkpoint replaces it whole.
    save_checkpoint(run / "checkpoints" / "step_2", policy, config=config())
    assert len(list((run / "checkpoints").iterdir())) == 2

    # A run dir's `best` pointer file names a checkpoint too; `last` stays the run dir's default.
    update_pointer(run, run / "checkpoints" / "step_1", "best")
    assert resolve_checkpoint(run / "best") == run / "checkpoints" / "step_1"
    assert resolve_checkpoint(run) == run / "checkpoints" / "step_2"
    with pytest.raises(ValueError, match="pointer 'first': choose from"):
        update_pointer(run, run / "checkpoints" / "step_1", "first")

    (run / "last").write_text("checkpoints/step_9\n")
    with pytest.raises(FileNotFoundError, match="'last' pointer names 'checkpoints/step_9'"):
        resolve_checkpoint(run)


def test_missing_weights_and_paths_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_policy(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"checkpoint dir .*empty has no model.safetensors"):
        load_policy(tmp_path / "empty")
    ckpt = save_checkpoint(tmp_path / "ckpt", make_policy(), config=config())
    with pytest.raises(FileNotFoundError, match="cannot be resumed"):
        load_training_state(ckpt)
    (tmp_path / "notes.txt").write_text("checkpoints/step_1\n")
    with pytest.raises(NotADirectoryError, match="notes.txt is a file; give a checkpoint dir"):
        load_policy(tmp_path / "notes.txt")


def test_spec_mismatch_names_the_key():
    policy = make_policy()
    richer = ObsSpec(
        terms={**SPEC.terms, "joint_pos": TermSpec((7,))},
        groups={"policy": ("joint_pos", *SPEC.groups["policy"])},
        action=SPEC.action,
    )
    check_policy_env_compatible(policy, richer)  # extra env observations are fine
    other_shape = ObsSpec(
        terms={**SPEC.terms, "target_pos": TermSpec((2,))}, groups=SPEC.groups, action=SPEC.action
    )
    with pytest.raises(ValueError, match="obs key policy/target_pos"):
        check_policy_env_compatible(policy, other_shape)
    other_action = ObsSpec(terms=SPEC.terms, groups=SPEC.groups, action=ActionSpec(dim=7))
    with pytest.raises(ValueError, match="action dim: 4 vs 7"):
        check_policy_env_compatible(SPEC, other_action)


def test_training_state_and_rng_restore(tmp_path):
    policy = make_policy()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    policy.compute_loss({"obs": obs_window(), "action": torch.zeros(5, 4, 4)})[0].backward()
    optimizer.step()
    ckpt = save_checkpoint(
        tmp_path / "ckpt",
        policy,
        config=config(),
        training_state={"step": 7, "epoch": 1, "optimizer": optimizer.state_dict()},
    )
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(5), random.random()  # move the streams on

    state = load_training_state(ckpt)
    assert (state["step"], state["epoch"]) == (7, 1)
    fresh = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    fresh.load_state_dict(state["optimizer"])
    assert fresh.state_dict()["state"][0]["step"] == 1
    restore_rng_state(state["rng"])
    torch.testing.assert_close(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]

    snapshot = capture_rng_state()
    a = torch.rand(4)
    restore_rng_state(snapshot)
    torch.testing.assert_close(torch.rand(4), a)
