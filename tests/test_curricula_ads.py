"""Automatic discount scheduling and OT rewards (METHODS.md §6)."""

import math

import numpy as np
import pytest
import torch

from robolearn.curricula import ot_reward
from robolearn.curricula.discount import (
    FEATURE_EMBEDDINGS,
    ADSConfig,
    ADSCurriculum,
    discount,
    lis_length,
    median_distance,
)
from robolearn.curricula.ot_reward import (
    OTReward,
    cosine_cost,
    sinkhorn,
    sinkhorn_log,
    sinkhorn_scaling,
)
from robolearn.data.hdf5 import DatasetError, EpisodeWriter

T = 40


def make_demos(n: int = 5, steps: int = T, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Reach-then-close demos: the arm moves along a noisy path, then the gripper closes."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, steps)[:, None]
    demos = []
    for _ in range(n):
        start = torch.tensor([0.4, -0.1, 0.3]) + 0.02 * torch.randn(3, generator=gen)
        goal = torch.tensor([0.6, 0.2, 0.05]) + 0.02 * torch.randn(3, generator=gen)
        bend = torch.tensor([0.0, 0.0, 0.1]) * torch.sin(math.pi * t)
        pos = start + (goal - start) * t + bend + 0.002 * torch.randn(steps, 3, generator=gen)
        grip = 0.04 * (1 - torch.sigmoid(30 * (t - 0.8))).repeat(1, 2)
        demos.append({"eef_pos": pos, "gripper_qpos": grip})
    return demos


def test_discount_weighs_a_reward_p_steps_ahead_by_alpha():
    for p in (1, 2, 7, 50, 333):
        assert discount(p, 0.2) ** p == pytest.approx(0.2, rel=1e-12)
    assert discount(10, 0.2) < discount(11, 0.2)  # more progress, more far-sighted


def test_lis_is_strictly_increasing():
    assert lis_length([]) == 0
    assert lis_length([3, 3, 3, 3]) == 1
    assert lis_length([0, 1, 2, 3]) == 4
    assert lis_length([2, 0, 1, 5, 3, 4]) == 4


@pytest.mark.parametrize("features", FEATURE_EMBEDDINGS)
def test_sinkhorn_plan_has_uniform_marginals(features):
    ads = ADSCurriculum(make_demos(), T, ADSConfig(features=features))
    agent = torch.stack([ads.reward_features(d) for d in make_demos(3, seed=5)])  # (3, T, D)
    cost = ads.reward_features.cost(agent, ads.demos[0].expand(3, -1, -1))
    rows = cols = torch.full((3, T), 1 / T)
    # METHODS' 100 iterations at eps = 0.01 on trajectory costs: columns exact (updated last),
    # rows within 15% ...
    plan = sinkhorn(cost, eps=0.01, iterations=100)
    assert torch.allclose(plan.sum(1).float(), cols, rtol=1e-6)
    assert torch.allclose(plan.sum(2).float(), rows, rtol=0.15)
    # ... and the iteration converges: rows exact too given more of them.
    plan = sinkhorn(cost, eps=0.01, iterations=3000)
    assert torch.allclose(plan.sum(2).float(), rows, rtol=2e-3)


def test_sinkhorn_scaling_and_log_forms_give_the_same_plan():
    ads = ADSCurriculum(make_demos(), T)
    agent = torch.stack([ads.reward_features(d) for d in make_demos(3, seed=5)])
    cost = cosine_cost(agent, ads.demos[0].expand(3, -1, -1))
    scaled, logged = sinkhorn_scaling(cost, 0.01, 100), sinkhorn_log(cost, 0.01, 100)
    assert torch.allclose(scaled, logged, rtol=1e-9, atol=1e-15)
    assert torch.equal(sinkhorn(cost, 0.01, 100), scaled)  # float64 costs: the scaling form
    # An eps whose kernel exp(-C/eps) would underflow float64: finite plan, exact column marginals.
    tiny = sinkhorn(cost, 1e-4, 100)
    assert torch.isfinite(tiny).all()
    assert torch.allclose(tiny.sum(1), torch.full((3, T), 1 / T, dtype=tiny.dtype))


def test_sinkhorn_scaling_absorbs_costs_whose_kernel_underflows(monkeypatch):
    """Euclidean costs up to ~10 at eps 0.01: exp(-C/eps) is 0 in float64 for most entries, yet
    the scaling form (absorbing into potentials, not falling back) gives the log domain's plan."""
    ads = ADSCurriculum(make_demos(), T, ADSConfig(features="euclidean"))
    agent = torch.stack([ads.reward_features(d) for d in make_demos(3, seed=5)])
    cost = torch.cdist(agent + 3.0, ads.demos[0].expand(3, -1, -1))
    assert float(cost.max()) / 0.01 > 800  # past float64's e^-745
    logged = sinkhorn_log(cost, 0.01, 100)

    def no_fallback(*args):
        raise AssertionError("sinkhorn_scaling fell back to the log domain")

    monkeypatch.setattr(ot_reward, "sinkhorn_log", no_fallback)
    scaled = sinkhorn_scaling(cost, 0.01, 100)
    assert torch.allclose(scaled, logged, rtol=1e-9, atol=1e-15)
    assert torch.allclose(scaled.sum(1), torch.full((3, T), 1 / T, dtype=scaled.dtype))


@pytest.mark.parametrize("features", FEATURE_EMBEDDINGS)
def test_ot_reward_is_scaled_by_the_first_episode_and_zero_for_the_demo_itself(features):
    ads = ADSCurriculum(make_demos(), T, ADSConfig(features=features))
    demo = ads.demos[0]
    reward = OTReward([demo], cost=ads.reward_features.cost)
    frozen = demo[:1].expand(T, -1)
    first = reward(frozen[None])
    assert first.sum().item() == pytest.approx(-10.0)
    assert (first <= 0).all()
    identical = reward(demo[None])
    assert identical.abs().sum() < 0.01 * 10  # under 1% of the first episode's cost


def test_the_logged_ot_return_is_the_mean_episode_sum_of_the_paid_rewards():
    demos = make_demos()
    ads = ADSCurriculum(demos, T)
    episodes = [make_demos(n=1, seed=s)[0] for s in (1, 2, 3)]
    paid = ads.rewards(episodes)
    logged = ads.update({"episodes": episodes})["ads/ot_return"]
    assert logged == pytest.approx(float(torch.stack([r.sum() for r in paid]).mean()))
    assert logged < 0  # OT rewards are never positive
    assert ads.rewards([episodes[0], demos[0]]) and ads.update({})["ads/ot_return"] > logged


def test_ot_reward_uses_the_best_matching_demo():
    demos = ADSCurriculum(make_demos(), T).demos
    reward = OTReward(demos[:2])
    reward.scale = 1.0
    costs = reward.transport_costs(demos[1][None])[:, 0].sum(-1)
    assert costs.argmin() == 1
    assert torch.allclose(
        reward(demos[1][None]).double(), -reward.transport_costs(demos[1][None])[1]
    )


@pytest.mark.parametrize("features", FEATURE_EMBEDDINGS)
def test_replaying_a_demo_advances_progress_and_a_frozen_agent_does_not(features):
    demos = make_demos()
    ads = ADSCurriculum(demos, T, ADSConfig(features=features))
    assert ads.progress == math.floor(0.2 * T) == 8
    frozen = [{k: v[:1].expand(T, -1) for k, v in d.items()} for d in demos]
    for _ in range(3):
        ads.update({"episodes": frozen})
    assert ads.progress == 8
    assert ads.gamma == pytest.approx(0.2 ** (1 / 8))

    replay = ADSCurriculum(demos, T, ADSConfig(features=features))
    replay.update({"episodes": demos[:1]})  # one of the demos, frame for frame
    assert replay.progress == 8 + 5

    history = [ads.progress]
    for _ in range(10):
        logged = ads.update({"episodes": make_demos(seed=1)})  # an expert-like agent
        history.append(ads.progress)
    steps = np.diff(history)
    assert steps.min() >= 0 and steps.max() <= 5
    assert history[1] - history[0] == 5  # matches the demos well: the full 5 per update
    assert history[-1] == T  # and stops at the horizon
    assert logged["ads/progress"] == T and logged["ads/gamma"] == pytest.approx(0.2 ** (1 / T))


def test_progress_keys_let_the_recogniser_watch_the_object_and_not_the_arm():
    """An agent that replays the arm's motion while the object stays put: a recogniser on the arm
    advances p, one on the object does not; the OT reward reads obs_keys either way."""
    demos = make_demos()
    gen = torch.Generator().manual_seed(3)
    t = torch.linspace(0, 1, T)[:, None]
    for demo in demos:  # the arm pushes an object along from the first frame
        start = torch.tensor([0.5, 0.01 * torch.randn(1, generator=gen).item(), 0.02])
        demo["cube_pos"] = start + torch.tensor([0.0, 0.3, 0.0]) * t
    arm_only = [{**d, "cube_pos": d["cube_pos"][:1].expand(T, -1)} for d in demos]
    keys = ("eef_pos", "gripper_qpos", "cube_pos")
    watch_arm = ADSCurriculum(demos, T, ADSConfig(obs_keys=keys, progress_keys=keys[:2]))
    watch_cube = ADSCurriculum(demos, T, ADSConfig(obs_keys=keys, progress_keys=("cube_pos",)))
    for ads in (watch_arm, watch_cube):
        ads.update({"episodes": arm_only})
    assert watch_arm.progress > 8 and watch_cube.progress == 8
    dim = ADSConfig().fourier_dim
    assert watch_cube.demos[0].shape == watch_cube.progress_demos[0].shape == (T, dim)
    assert watch_cube.reward_features.mean.shape == (3 + 2 + 3,)  # rewards on every obs key
    assert watch_cube.progress_features.mean.shape == (3,)
    watch_cube.update({"episodes": demos[:1]})  # the object moving as in a demo: p advances
    assert watch_cube.progress == 8 + 5


def test_demos_shorter_than_the_horizon_are_flagged(caplog):
    ADSCurriculum(make_demos(), T)
    assert not caplog.records
    ADSCurriculum(make_demos(steps=T // 2), T)
    assert f"at most {T // 2} frames but episodes run {T} steps" in caplog.text


def test_fixed_gamma_baseline_keeps_its_discount_while_progress_advances():
    demos = make_demos()
    fixed = ADSCurriculum(demos, T, ADSConfig(fixed_gamma=0.99))
    fixed.update({"episodes": demos[:1]})
    assert fixed.progress == 8 + 5 and fixed.gamma == 0.99
    with pytest.raises(ValueError, match="fixed_gamma"):
        ADSConfig(fixed_gamma=1.0).validate()


def test_progress_never_decreases_whatever_the_agent_does():
    ads = ADSCurriculum(make_demos(), T)
    gen = torch.Generator().manual_seed(2)
    history = [ads.progress]
    for i in range(12):
        good = i % 3 == 0
        agent = (
            make_demos(4, seed=10 + i)
            if good
            else [
                {
                    "eef_pos": torch.randn(T, 3, generator=gen),
                    "gripper_qpos": torch.rand(T, 2, generator=gen),
                }
                for _ in range(4)
            ]
        )
        ads.update({"episodes": agent})
        history.append(ads.progress)
    steps = np.diff(history)
    assert steps.min() >= 0 and steps.max() <= 5 and history[-1] > history[0]


def test_state_dict_round_trip():
    ads = ADSCurriculum(make_demos(), T)
    ads.update({"episodes": make_demos(seed=1)})
    ads.rewards(make_demos(2, seed=3))
    other = ADSCurriculum(make_demos(), T)
    other.load_state_dict(ads.state_dict())
    assert other.progress == ads.progress and other.ot_reward.scale == ads.ot_reward.scale
    euclidean = ADSCurriculum(make_demos(), T, ADSConfig(features="euclidean"))
    with pytest.raises(ValueError, match="resume with the same curriculum.ads.obs_keys"):
        euclidean.load_state_dict(ads.state_dict())


def _write(path, demos, actions: bool) -> None:
    with EpisodeWriter(path, {"env_name": "lift"}) as writer:
        for d in demos:
            obs = {k: v.numpy() for k, v in d.items()}
            writer.add_episode(obs, actions=np.zeros((T, 7), np.float32) if actions else None)


def test_demos_load_from_observation_only_hdf5(tmp_path):
    path = tmp_path / "obs_only.hdf5"
    _write(path, make_demos(3), actions=False)
    ads = ADSCurriculum.from_dataset(path, T, ADSConfig(dataset=str(path)))
    assert len(ads.demos) == 3 and ads.demos[0].shape == (T, ADSConfig().fourier_dim)
    rewards = ads.rewards(
        make_demos(2, seed=4) + [{k: v[:20] for k, v in make_demos(1)[0].items()}]
    )
    assert [r.shape for r in rewards] == [(T,), (T,), (20,)]


def test_missing_observation_key_names_the_key_and_the_file(tmp_path):
    path = tmp_path / "no_grip.hdf5"
    _write(path, [{"eef_pos": d["eef_pos"]} for d in make_demos(2)], actions=True)
    with pytest.raises(DatasetError, match=r"no_grip\.hdf5.*obs/gripper_qpos.*'gripper_qpos'"):
        ADSCurriculum.from_dataset(path, T)


def test_one_demo_is_refused():
    with pytest.raises(ValueError, match="at least 2 demos"):
        ADSCurriculum(make_demos(1), T)


def test_fourier_and_euclidean_costs_grow_with_distance_where_affine_ones_match_a_far_ray():
    """A frame far out along the ray of a demo frame (seen from the demos' mean): the affine
    embedding's cosine takes it for that frame; the Fourier embedding's cost grows with the
    distance and saturates near 1; the Euclidean cost grows in proportion, without a ceiling."""
    demos = make_demos()
    costs = {}
    for features in FEATURE_EMBEDDINGS:
        ads = ADSCurriculum(demos, T, ADSConfig(features=features))
        feats = ads.reward_features
        frame = {k: v[T - 1 : T] for k, v in demos[0].items()}  # the demo's last frame
        mean = {"eef_pos": feats.mean[:3], "gripper_qpos": feats.mean[3:]}
        out = [{k: (mean[k] + s * (frame[k] - mean[k])).float() for k in frame} for s in (1, 2, 8)]
        pair = [feats.cost(feats(o), feats(frame)).item() for o in out]
        costs[features] = pair
    affine, fourier, euclidean = costs["affine"], costs["fourier"], costs["euclidean"]
    assert affine[0] < 1e-9 and affine[2] < 0.05  # 8x as far from the mean: still a match
    assert fourier[0] < 1e-9 < fourier[1] < fourier[2]
    assert fourier[2] > 0.8  # far away costs about as much as anything can (1 - cos ~ 1)
    assert euclidean[0] < 1e-6 and euclidean[2] == pytest.approx(7 * euclidean[1], rel=1e-4)


def test_the_euclidean_cost_is_in_units_of_the_demos_median_distance():
    demos = make_demos()
    feats = ADSCurriculum(demos, T, ADSConfig(features="euclidean")).reward_features
    z = torch.cat([feats(d) for d in demos])
    assert feats.cost(z, z).median().item() == pytest.approx(1.0, rel=0.05)


def test_the_fourier_kernel_width_follows_the_median_distance_between_demo_frames():
    line = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)  # distances 1, 2, 3
    assert median_distance(line) == 2.0
    assert median_distance(torch.zeros(4, 2)) == 1.0  # all frames alike: no scale to take
    demos = make_demos()
    widths = [
        ADSCurriculum(
            demos, T, ADSConfig(obs_keys=keys, fourier_bandwidth=0.5)
        ).reward_features.bandwidth
        for keys in (("eef_pos",), ("eef_pos", "gripper_qpos"))
    ]
    # More standardised terms, larger typical distances: a wider kernel, so costs do not saturate.
    assert 0 < widths[0] < widths[1]
