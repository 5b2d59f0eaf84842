"""``robolearn-train`` / ``robolearn-eval`` / ``robolearn`` end to end, in-process and tiny:
training per policy, evaluation, bad input, resume determinism, Ctrl-C."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import h5py
import pytest
from console import run
from omegaconf import OmegaConf
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from robolearn import load_policy
from robolearn.checkpoint import resolve_checkpoint
from robolearn.cli import eval as eval_cli
from robolearn.cli import main as main_cli
from robolearn.cli import train as train_cli
from robolearn.data.collect import collect
from robolearn.data.hdf5 import DemoFile
from robolearn.policies.trainer import StepBatches, Trainer

#: Tiny networks, so that a few dozen steps take a second or two.
TINY = {
    "bc": ("policy=bc", "policy.hidden_dims=[32,32]"),
    "diffusion": (
        "policy=diffusion",
        "policy.unet.down_dims=[16,32]",
        "policy.unet.time_embed_dim=16",
        "policy.num_inference_steps=3",
    ),
    "edm": (
        "policy=edm",
        "policy.denoiser=mlp",
        "policy.mlp.hidden_dim=32",
        "policy.mlp.num_blocks=1",
    ),
}
FAST = ("train.batch_size=32", "train.log_every=5", "train.progress=false", "threads=1")


@pytest.fixture(scope="module")
def lift_demos(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "lift.hdf5"
    result = collect("lift", 8, path, num_envs=8, valid_fraction=0.25, progress=False)
    assert result.written == 8
    return path


@pytest.fixture(autouse=True)
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def train(policy: str, run_dir: Path, dataset: Path, *overrides: str) -> int:
    args = (*TINY[policy], *FAST, f"dataset={dataset}", f"hydra.run.dir={run_dir}")
    return run(train_cli, *args, *overrides)


def weights(checkpoint: Path) -> dict:
    return load_file(checkpoint / "model.safetensors")


@pytest.mark.parametrize("policy", ["bc", "diffusion", "edm"])
def test_train_then_eval(workdir, monkeypatch, lift_demos, policy):
    run_dir = workdir / "run"
    args = ("train.steps=24", "train.checkpoint_every=10", "train.valid_every=12")
    sim_eval = ("train.eval_every=24", "train.eval_episodes=2", "train.eval_envs=2")
    assert train(policy, run_dir, lift_demos, *args, *sim_eval) == 0
    steps = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert steps == ["step_0000010", "step_0000020", "step_0000024"]
    assert (run_dir / "last").read_text().strip() == "checkpoints/step_0000024"
    assert any(k.startswith("ema.") for k in weights(run_dir / "checkpoints/step_0000024")) == (
        policy != "bc"  # EMA by default for the diffusion policies only
    )
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "valid/loss", "eval/success_rate"} <= set(scalars)
    assert [e.step for e in events.Scalars("valid/loss")] == [12, 24]

    eval_dir = workdir / "eval"
    status = run(
        eval_cli,
        f"checkpoint={run_dir}",
        "num_episodes=4",
        "num_envs=4",
        "progress=false",
        "threads=1",
        f"hydra.run.dir={eval_dir}",
    )
    assert status == 0
    info = json.loads((eval_dir / "eval_info.json").read_text())
    assert info["task"] == "lift" and info["n_episodes"] == 4 and len(info["episode_success"]) == 4


def test_eval_changes_the_sampler_of_a_checkpoint(workdir, monkeypatch, capsys, lift_demos):
    """``+policy.<key>=`` evaluates one checkpoint with other weightless settings (DDIM-10 ->
    DDPM-100 of diffusion_cpu's MLP); a key the policy lacks, or one that changes the network,
    is a one-line error."""
    run_dir = workdir / "run"
    args = ("policy=diffusion_cpu", "policy.mlp.hidden_dim=32", "policy.mlp.num_blocks=1")
    args += (*FAST, f"dataset={lift_demos}", f"hydra.run.dir={run_dir}", "train.steps=2")
    assert run(train_cli, *args) == 0
    common = (f"checkpoint={run_dir}", "num_episodes=2", "num_envs=2", "progress=false")
    eval_dir = workdir / "eval"
    ddpm = ("+policy.sampler=ddpm", f"hydra.run.dir={eval_dir}")
    assert run(eval_cli, *common, *ddpm) == 0
    assert json.loads((eval_dir / "eval_info.json").read_text())["n_episodes"] == 2
    ensembled = ("chunking=ensemble", "ensemble_m=0.1", f"hydra.run.dir={workdir / 'ens'}")
    assert run(eval_cli, *common, *ensembled) == 0
    info = json.loads((workdir / "ens" / "eval_info.json").read_text())
    assert info["chunking"] == "ensemble(m=0.1)" and info["n_episodes"] == 2
    for change, message in (
        ("+policy.samplr=ddpm", "policy config change 'samplr': policy 'diffusion' has no such"),
        ("+policy.mlp.hidden_dim=64", "does not fit policy 'diffusion' with config changes"),
        ("device=gpu0", "device 'gpu0'"),
    ):
        assert run(eval_cli, *common, change) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and err.startswith("robolearn-eval: error: ") and "\n" not in err


def test_default_run_dir(workdir, monkeypatch, lift_demos):
    args = (*TINY["bc"], *FAST, f"dataset={lift_demos}", "train.steps=2")
    assert run(train_cli, *args) == 0
    [run_dir] = workdir.glob("outputs/*/*_bc_lift")
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / "last").is_file()


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_multirun(workdir, monkeypatch, lift_demos, launcher):
    if launcher == "joblib":
        pytest.importorskip(
            "hydra_plugins.hydra_joblib_launcher", reason="pip install robolearn[joblib]"
        )
    args = ("-m", f"launcher={launcher}", *TINY["bc"], *FAST, f"dataset={lift_demos}")
    assert run(train_cli, *args, "train.steps=1,2") == 0
    runs = sorted(workdir.glob("outputs/*/*_sweep_lift/*_bc_lift"))
    assert [r.name for r in runs] == ["0_bc_lift", "1_bc_lift"]
    assert [(r / "last").read_text().strip() for r in runs] == [
        "checkpoints/step_0000001",
        "checkpoints/step_0000002",
    ]


def test_resume_is_exact_and_ctrl_c_saves(workdir, monkeypatch, lift_demos, capsys):
    """2N steps in one go == N steps, Ctrl-C, resume for N more: the same weights, EMA too."""
    n = 8
    args = (f"train.steps={2 * n}", "train.checkpoint_every=3", "train.valid_every=5")
    assert train("edm", workdir / "whole", lift_demos, *args) == 0

    real_step = Trainer._train_step

    def interrupt_at_n(self, batch):
        if self.step == n:
            raise KeyboardInterrupt
        return real_step(self, batch)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_train_step", interrupt_at_n)
        assert train("edm", workdir / "cut", lift_demos, *args) == 130
    err = capsys.readouterr().err
    assert f"interrupted at step {n}" in err
    assert f"resume with: robolearn-train resume={workdir / 'cut'}" in err
    assert (workdir / "cut" / "last").read_text().strip() == f"checkpoints/step_{n:07d}"

    resumed = workdir / "resumed"
    status = run(
        train_cli, f"resume={workdir / 'cut'}", "train.progress=false",
        f"hydra.run.dir={resumed}",
    )  # fmt: skip
    assert status == 0
    whole = weights(workdir / "whole" / "checkpoints" / f"step_{2 * n:07d}")
    again = weights(resumed / "checkpoints" / f"step_{2 * n:07d}")
    assert whole.keys() == again.keys() and any(k.startswith("ema.") for k in whole)
    for key, value in whole.items():
        assert (value == again[key]).all(), key


def test_best_checkpoint_is_kept_and_survives_resume(workdir, monkeypatch, lift_demos):
    """Each in-training evaluation at least as good as the best so far checkpoints its step and
    moves ``best`` (a tie goes to the later step); a resumed run points its own ``best`` at
    the earlier run's weights."""
    rates = iter([0.5, 0.75, 0.25, 0.75, 0.5, 0.25, 0.1])  # steps 2, 4, ..., 10; 12; 12
    scripted = lambda *args: lambda policy: {"success_rate": next(rates)}  # noqa: E731
    monkeypatch.setattr(train_cli, "_sim_evaluator", scripted)
    run_dir = workdir / "run"
    assert train("bc", run_dir, lift_demos, "train.steps=10", "train.eval_every=2") == 0
    assert (run_dir / "best").read_text().strip() == "checkpoints/step_0000008"
    steps = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert steps == ["step_0000002", "step_0000004", "step_0000008", "step_0000010"]
    assert isinstance(load_policy(run_dir / "best"), type(load_policy(run_dir)))
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("eval/best_success_rate")] == [0.5] + [0.75] * 4

    resumed = workdir / "resumed"
    status = run(
        train_cli, f"resume={run_dir}", "train.steps=12", "train.progress=false",
        f"hydra.run.dir={resumed}",
    )  # fmt: skip
    assert status == 0
    best = resolve_checkpoint(resumed / "best").resolve()
    assert best == (run_dir / "checkpoints" / "step_0000008").resolve()

    # Weights deleted since: the best restarts with the resumed run's own evaluations.
    shutil.rmtree(run_dir / "checkpoints" / "step_0000008")
    again = workdir / "again"
    status = run(
        train_cli, f"resume={run_dir}", "train.steps=12", "train.progress=false",
        f"hydra.run.dir={again}",
    )  # fmt: skip
    assert status == 0 and next(rates, None) is None
    assert (again / "best").read_text().strip() == "checkpoints/step_0000012"


def test_sigint_stops_after_the_step_and_resumes(workdir, monkeypatch, lift_demos, capsys):
    """A real SIGINT mid-step: the step completes, a checkpoint is saved, exit 130."""
    real_step = Trainer._train_step
    handler_before = signal.getsignal(
        signal.SIGINT
    )  # SIG_IGN when the suite runs in the background

    def sigint_at_3(self, batch):
        if self.step == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self, batch)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_train_step", sigint_at_3)
        assert train("bc", workdir / "run", lift_demos, "train.steps=10") == 130
    assert "interrupted at step 4" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is handler_before  # handler restored
    status = run(train_cli, f"resume={workdir / 'run'}", f"hydra.run.dir={workdir / 'more'}")
    assert status == 0
    assert (workdir / "more" / "last").read_text().strip() == "checkpoints/step_0000010"


def _empty_dataset(path: Path, like: Path) -> Path:
    with h5py.File(like, "r") as src, h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["total"] = 0
        data.attrs["env_args"] = src["data"].attrs["env_args"]
    return path


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("dataset=missing.hdf5",), "missing.hdf5 does not exist; make one with"),
        (("dataset=garbage.hdf5",), "cannot open as HDF5"),
        (("dataset=empty.hdf5",), "/data: no demo_<i> groups"),
        (("dataset=reach.hdf5",), "spec mismatch: obs key policy/cube_pos"),
        (
            ("policy.obs_keys=[eef_pos,joint_vel]",),
            "the policy reads observation 'joint_vel', which is not in the env's `policy` group",
        ),
        (("train.steps=abc",), "config key 'train.steps' must be an integer, got 'abc'"),
        (("train.stpes=5",), "Could not override 'train.stpes': Key 'stpes' is not in struct"),
        (("policy.hidden_dims=abc",), "'policy.hidden_dims' must be a list"),
        (("policy=nope",), "Could not find 'policy/nope'; available options in 'policy': bc"),
        (("train.lr=-1",), "train.lr must be positive"),
        (("train.lr_schedule=piecewise_constant",), "train.lr_schedule must be one of"),
        (("logger.backend=neptune",), "unknown logger backend 'neptune'"),
        (("resume=nowhere",), "nowhere does not exist"),
    ],
)
def test_bad_input_is_one_clear_line(workdir, monkeypatch, capsys, lift_demos, overrides, message):
    (workdir / "garbage.hdf5").write_bytes(b"\x00garbage" * 64)
    _empty_dataset(workdir / "empty.hdf5", lift_demos)
    if "dataset=reach.hdf5" in overrides:
        collect("reach", 2, workdir / "reach.hdf5", num_envs=2, progress=False)
    args = ("policy=bc", f"dataset={lift_demos}", "train.progress=false", *overrides)
    assert run(train_cli, *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("robolearn-train: error: ") and "\n" not in err
    assert not (workdir / "outputs").exists() or not list((workdir / "outputs").rglob("last"))


def test_resume_refuses_to_change_the_model(workdir, monkeypatch, capsys, lift_demos):
    assert train("bc", workdir / "run", lift_demos, "train.steps=2") == 0
    status = run(train_cli, f"resume={workdir / 'run'}", "policy.horizon=4")
    assert status == 2
    assert "cannot override 'policy.horizon' when resuming" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ((), "give the policy to evaluate: checkpoint=<run dir or checkpoint dir>"),
        (("checkpoint=empty_dir",), "has no model.safetensors"),
        (("checkpoint=nowhere",), "nowhere does not exist"),
        (("checkpoint=empty_dir", "num_episodes=0"), "num_episodes must be positive"),
        (("checkpoint=empty_dir", "chunking=smooth"), "chunking 'smooth': choose from"),
    ],
)
def test_eval_bad_input(workdir, monkeypatch, capsys, overrides, message):
    (workdir / "empty_dir").mkdir()
    assert run(eval_cli, *overrides) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("robolearn-eval: error: ") and "\n" not in err


def test_wandb_missing_is_a_clear_error(workdir, monkeypatch, capsys, lift_demos):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails as if not installed
    assert train("bc", workdir / "run", lift_demos, "logger=wandb") == 2
    assert 'logger=wandb needs the wandb package: pip install "robolearn[wandb]"' in (
        capsys.readouterr().err
    )


def test_wandb_offline_needs_no_network(workdir, monkeypatch, lift_demos):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    args = ("train.steps=2", "logger=wandb", "logger.mode=offline")
    assert train("bc", workdir / "run", lift_demos, *args) == 0
    assert list((workdir / "run" / "wandb").glob("offline-run-*"))


def test_main_job_tiny(workdir, monkeypatch, capsys):
    """``robolearn``: collects (the dataset is absent), trains, evaluates, prints the table."""
    args = (
        "experiment=smoke", *TINY["edm"], *FAST, "train.steps=4", "train.eval_every=2",
        "train.eval_episodes=2", "train.eval_envs=2", "collect.num_episodes=4",
        "collect.num_envs=4",
        "collect.progress=false", "eval.num_episodes=4", "eval.num_envs=4", "eval.video=false",
        "eval.progress=false", "hydra.run.dir=main",
    )  # fmt: skip
    assert run(main_cli, *args) == 0
    assert (workdir / "datasets" / "lift_expert.hdf5").is_file()
    out = capsys.readouterr().out
    assert "success (95% CI)" in out and "edm" in out
    assert f"eval_info   {workdir / 'main' / 'eval_info.json'}" in out
    assert "video       off" in out
    # The evaluated checkpoint is the best of the in-training evaluations (steps 2 and 4).
    checkpoint = next(line for line in out.splitlines() if line.startswith("checkpoint  "))
    assert "(best of the evaluations every 2 steps" in checkpoint
    best = (workdir / "main" / "best").read_text().strip()
    assert checkpoint.split()[1] == str(workdir / "main" / best)


def test_a_short_collection_is_kept_aside_not_reused(workdir, monkeypatch, capsys):
    """The expert falls short: the demos are kept beside the dataset path, which stays free, so
    the next ``robolearn`` collects again instead of training on too few demos."""
    import robolearn.cli.main as main_module

    real = main_module.collect

    def short(task, num_episodes, path, **kwargs):
        result = real(task, num_episodes - 1, path, **kwargs)
        return dataclasses.replace(result, requested=num_episodes)

    monkeypatch.setattr(main_module, "collect", short)
    args = ("collect.num_episodes=3", "collect.num_envs=3", "collect.progress=false", *FAST)
    assert run(main_cli, *args) == 1
    assert "produced only 2 of 3 demos; kept 2 demos in" in capsys.readouterr().err
    assert not (workdir / "datasets" / "lift_expert.hdf5").exists()
    assert (workdir / "datasets" / "lift_expert.partial.hdf5").is_file()


def test_pipeline_overrides_are_not_training_overrides():
    overrides = ["train.steps=4", "eval.video=false", "+eval.policy.num_steps=5", "~collect.seed"]
    assert main_cli.training_overrides(overrides) == ["train.steps=4"]


def test_step_batches_depend_only_on_seed_and_step():
    whole = StepBatches(10, 4, seed=3)
    first = [b for b, _ in zip(whole, range(7), strict=False)]
    later = [b for b, _ in zip(StepBatches(10, 4, seed=3, start_step=4), range(3), strict=False)]
    assert later == first[4:]
    assert sorted(sum(first[:5], [])[:10]) == list(range(10))  # an epoch is a permutation
    assert [b for b, _ in zip(StepBatches(10, 4, seed=4), range(7), strict=False)] != first


def test_main_job_push_experiment(workdir, monkeypatch, capsys):
    """``robolearn experiment=push``: push demos under the expert's 1 cm rule, then the preset's
    short-chunk policy trained and evaluated on push."""
    args = (
        "experiment=push", "policy.mlp.hidden_dim=32", "policy.mlp.num_blocks=1", *FAST,
        "train.steps=4", "collect.num_episodes=2", "collect.num_envs=2", "collect.progress=false",
        "eval.num_episodes=2", "eval.num_envs=2", "eval.video=false", "eval.progress=false",
        "hydra.run.dir=main",
    )  # fmt: skip
    assert run(main_cli, *args) == 0
    with DemoFile(workdir / "datasets" / "push_expert.hdf5") as demos:
        assert demos.env_args["env_kwargs"]["task_config"]["success_radius"] == 0.01
    info = json.loads((workdir / "main" / "eval_info.json").read_text())
    assert info["task"] == "push"
    policy = load_policy(workdir / "main")
    assert (policy.cfg.horizon, policy.cfg.n_action_steps, policy.cfg.n_obs_steps) == (2, 2, 1)
    config = OmegaConf.load(resolve_checkpoint(workdir / "main") / "config.yaml")
    preset = {"lr": 5e-4, "ema_power": 0.9, "ema_max_decay": 0.9999}
    assert {key: config.train[key] for key in preset} == preset
