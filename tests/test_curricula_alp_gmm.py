"""ALP-GMM teacher (METHODS.md §7) and the curriculum that feeds it to a VecEnv's resets."""

import pytest
import torch

from robolearn.curricula.alp_gmm import ALPGMMConfig, ALPGMMTeacher
from robolearn.curricula.domain_teacher import DomainTeacherConfig, DomainTeacherCurriculum
from robolearn.envs.vec_env import VecEnv

LOW, HIGH = torch.tensor([0.5, -2.0]), torch.tensor([1.5, 2.0])


def test_bootstrap_samples_are_uniform_and_in_the_box():
    teacher = ALPGMMTeacher(LOW, HIGH)
    returns = torch.linspace(0, 1, 249)
    teacher.update(teacher.sample(249), returns)  # one short of the first fit
    assert teacher.mixture is None
    x = teacher.normalise(teacher.sample(20000))
    assert ((x >= 0) & (x <= 1)).all()
    # Uniform on [0, 1]: mean 1/2, variance 1/12, each decile ~10%.
    assert torch.allclose(x.mean(0), torch.full((2,), 0.5, dtype=x.dtype), atol=0.01)
    assert torch.allclose(x.var(0), torch.full((2,), 1 / 12, dtype=x.dtype), atol=0.005)
    deciles = torch.stack([torch.histc(x[:, d], bins=10, min=0, max=1) for d in range(2)])
    assert (deciles / len(x) - 0.1).abs().max() < 0.01


def test_alp_is_the_return_change_from_the_nearest_earlier_task_and_zero_at_first():
    teacher = ALPGMMTeacher(torch.zeros(1), torch.ones(1), ALPGMMConfig(min_history=2))
    teacher.update(torch.tensor([[0.0], [1.0], [0.5]]), torch.tensor([1.0, 5.0, 2.0]))
    teacher.update(torch.tensor([[0.9], [0.1]]), torch.tensor([3.0, 0.5]))
    # Points 1-3 see at most 2 earlier points: 0. Then 0.9 -> nearest 1.0 (5): 2;
    # 0.1 -> nearest 0.0 (1) among all earlier points, including 0.9 in its own batch: 0.5.
    assert teacher.alp.tolist() == [0.0, 0.0, 0.0, 2.0, 0.5]


def test_refits_exactly_every_fit_every_episodes():
    cfg = ALPGMMConfig(bootstrap_episodes=250, fit_every=250, max_components=3)
    teacher = ALPGMMTeacher(LOW, HIGH, cfg)
    gen = torch.Generator().manual_seed(0)
    # Uneven batch sizes cross the fit points in the middle of batches.
    for n in [100, 149, 1, 1, 300, 199, 1, 50]:
        teacher.update(teacher.sample(n), torch.rand(n, generator=gen))
    assert teacher.num_episodes == 801
    assert teacher.fit_episodes == [250, 500, 750]
    assert teacher.mixture is not None


def test_a_deferred_fit_runs_later_on_the_window_of_its_due_point():
    cfg = ALPGMMConfig(bootstrap_episodes=20, fit_every=20, fit_window=20, max_components=3)
    now, later = ALPGMMTeacher(LOW, HIGH, cfg), ALPGMMTeacher(LOW, HIGH, cfg)
    gen = torch.Generator().manual_seed(0)
    batches = [(now.sample(n), torch.rand(n, generator=gen)) for n in (15, 10, 7, 11)]
    for tau, returns in batches[:2]:  # crosses 20 at episode 25
        now.update(tau, returns)
        later.update(tau, returns, fit=False)
    assert later.mixture is None and later.pending_fit == 20
    for tau, returns in batches[2:]:  # 32, 43: crosses 40; the first fit ran at 25 in `now`
        later.update(tau, returns, fit=False)
    assert later.pending_fit == 40  # the later due point replaces the one not yet run
    assert later.fit_pending() and not later.fit_pending()
    now_40 = ALPGMMTeacher(LOW, HIGH, cfg)
    for tau, returns in batches:
        now_40.update(tau, returns)
    assert later.fit_episodes == [40] and now_40.fit_episodes == [20, 40]
    assert torch.equal(later.mixture.means, now_40.mixture.means)  # same window, same mixture


def test_domain_teacher_fits_once_per_iteration_however_many_episodes_end():
    env = _lift_env({"object_friction": [0.5, 1.5]}, num_envs=8)
    teacher = ALPGMMConfig(bootstrap_episodes=8, fit_every=8, fit_window=8, max_components=3)
    curriculum = DomainTeacherCurriculum(env, DomainTeacherConfig(teacher=teacher))
    action = torch.zeros(env.num_envs, env.action_dim)
    fitted: list[int] = []
    for due in (24, 48):  # two "rollouts" of 9 steps: 3 x 8 episodes and 3 due points each
        for _ in range(9):
            curriculum.observe(env.step(action)[-1])
        assert curriculum.teacher.pending_fit == due and curriculum.teacher.fit_episodes == fitted
        curriculum.update({})  # the end of the iteration: one fit, on the latest due window
        fitted.append(due)
        assert curriculum.teacher.pending_fit is None and curriculum.teacher.fit_episodes == fitted


def test_two_clusters_get_draws_in_proportion_to_their_progress():
    """ALP 0.9 vs 0.1: 0.8·0.9 = 72% and 0.8·0.1 = 8% of draws, plus the uniform 20%'s share."""
    teacher = ALPGMMTeacher(torch.zeros(2), torch.ones(2), ALPGMMConfig(seed=3))
    gen = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0.25, 0.25], [0.75, 0.75]], dtype=torch.float64)
    tau = torch.cat(
        [c + 0.02 * torch.randn(125, 2, generator=gen, dtype=torch.float64) for c in centres]
    )
    alp = torch.cat(
        [
            0.9 + 0.01 * torch.randn(125, generator=gen, dtype=torch.float64),
            0.1 + 0.01 * torch.randn(125, generator=gen, dtype=torch.float64),
        ]
    )
    mixture = teacher.fit(tau, alp)
    assert mixture.num_components == 2

    n, radius = 40000, 0.1  # 5 standard deviations of each cluster
    near = (teacher.sample(n)[:, None, :] - centres).norm(dim=-1) < radius  # (n, 2)
    share = near.float().mean(0)
    disc = torch.pi * radius**2  # area share of each disc in the unit box
    expected = torch.tensor([0.72 + 0.2 * disc, 0.08 + 0.2 * disc], dtype=share.dtype)
    # Binomial standard deviation is < 0.0025 at n = 40000; 0.015 is six of them.
    assert torch.allclose(share, expected, atol=0.015), (share, expected)
    uniform_elsewhere = 1 - near.any(-1).float().mean()
    assert abs(uniform_elsewhere - 0.2 * (1 - 2 * disc)) < 0.015


def test_state_dict_round_trip_resumes_the_same_draws():
    cfg = ALPGMMConfig(bootstrap_episodes=20, fit_every=20, fit_window=20, max_components=3)
    teacher = ALPGMMTeacher(LOW, HIGH, cfg)
    teacher.update(teacher.sample(30), torch.arange(30.0))
    state = teacher.state_dict()
    copy = ALPGMMTeacher(LOW, HIGH, cfg)
    copy.load_state_dict(state)
    assert torch.equal(copy.sample(50), teacher.sample(50))
    assert copy.fit_episodes == teacher.fit_episodes == [20]


def test_bad_shapes_and_boxes_are_refused():
    with pytest.raises(ValueError, match="low <= high"):
        ALPGMMTeacher(torch.ones(2), torch.zeros(2))
    teacher = ALPGMMTeacher(LOW, HIGH)
    with pytest.raises(ValueError, match=r"expected \(n, 2\)"):
        teacher.update(torch.zeros(3, 1), torch.zeros(3))


def _lift_env(domain: dict, num_envs: int = 4) -> VecEnv:
    return VecEnv("lift", num_envs, seed=0, task_overrides={"episode_length": 3, "domain": domain})


def test_domain_teacher_sets_the_sampled_params_at_reset_and_learns_their_returns():
    env = _lift_env({"object_friction": [0.5, 1.5], "object_mass_scale": [0.8, 1.2]})
    curriculum = DomainTeacherCurriculum(env, DomainTeacherConfig(params=("object_friction",)))
    env.reset()  # consumes the pending choices made at construction ...
    curriculum.sync()  # ... so the curriculum re-reads them and chooses the next ones
    f = env.task.domain.index("object_friction")
    running = env.task.domain.values[:, f].clone()
    pending = env.task.domain._pending[:, f].clone()
    assert not torch.isnan(pending).any()

    action = torch.zeros(env.num_envs, env.action_dim)
    for _ in range(3):
        _, _, _, _, info = env.step(action)
        curriculum.observe(info)
    assert info["episode"]["env_ids"].tolist() == [0, 1, 2, 3]
    # The worlds now run with the teacher's pending choice, which the sim's friction reflects ...
    assert torch.equal(env.task.domain.values[:, f], pending)
    friction = env.sim.model_field("geom_friction")[:, env.task.obj_geom["cube"], 0]
    assert torch.allclose(friction.float(), pending)
    # ... and the teacher was told the returns of the parameters the finished episodes ran with.
    assert torch.allclose(curriculum.teacher.tau[:, 0] + 0.5, running.double())
    assert torch.allclose(curriculum.teacher.returns, info["episode"]["return"].double())
    assert curriculum.update({})["alp_gmm/episodes"] == 4.0


def test_domain_teacher_refuses_a_checkpoint_of_other_ranges():
    taught = DomainTeacherConfig(params=("object_friction",))
    saved = DomainTeacherCurriculum(_lift_env({"object_friction": [0.5, 1.5]}), taught)
    DomainTeacherCurriculum(_lift_env({"object_friction": [0.5, 1.5]}), taught).load_state_dict(
        saved.state_dict()
    )
    other = DomainTeacherCurriculum(_lift_env({"object_friction": [0.3, 1.5]}), taught)
    with pytest.raises(ValueError, match=r"trained on \{'object_friction': \[0.5, 1.5\]\}"):
        other.load_state_dict(saved.state_dict())


def test_domain_teacher_needs_a_varying_parameter():
    with pytest.raises(ValueError, match="range of this task is a point"):
        DomainTeacherCurriculum(_lift_env({}, num_envs=1))
    with pytest.raises(ValueError, match="unknown domain parameters"):
        DomainTeacherCurriculum(
            _lift_env({"object_friction": [0.5, 1.5]}, num_envs=1),
            DomainTeacherConfig(params=("gravity",)),
        )
