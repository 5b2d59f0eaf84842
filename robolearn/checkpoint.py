"""Checkpoints: one directory format for imitation, RL fine-tuning, evaluation and deployment.

Layout of a checkpoint directory::

    model.safetensors        policy weights under ``policy.``, EMA weights under ``ema.``
    config.yaml              the resolved run config (``policy.name`` + the policy's fields)
    spec.json                {"obs_spec", "normalizer", "policy": {"name", "config"},
                              "robolearn_version"}
    training_state/          only when saved with a training state (resumable)
        optimizer.pt, scheduler.pt, rng.pt, <other state dicts>.pt   (torch.save)
        state.json           {"step", "epoch", ...}: the plain values

and ``<run_dir>/last``, a text file holding the newest checkpoint's path relative to the run dir
(``<run_dir>/best`` likewise names the checkpoint that scored best in the simulator during
training, when the run evaluated there).

Why this shape: weights are safetensors and everything else JSON, YAML or tensor-only pickles
read with ``torch.load(weights_only=True)``, so loading a checkpoint never runs code from it.
A checkpoint is written into a hidden sibling directory, fsynced, and renamed into place, and
``last`` is replaced atomically afterwards, so a crash or Ctrl-C at any moment leaves the
previous checkpoint and pointer intact: there is never a half-written checkpoint to resume from.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file
from torch import nn

import robolearn
from robolearn.data.normalizer import Normalizer
from robolearn.policies import Policy, policy_class
from robolearn.spec import ObsSpec
from robolearn.utils.config import from_dict
from robolearn.utils.files import fsync_entry, fsync_path, write_text_atomic, write_text_synced

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.yaml"
SPEC_FILE = "spec.json"
TRAINING_STATE_DIR = "training_state"
STATE_FILE = "state.json"
LAST_POINTER = "last"
BEST_POINTER = "best"
POINTERS = (LAST_POINTER, BEST_POINTER)
POLICY_PREFIX, EMA_PREFIX = "policy.", "ema."

PathLike = str | os.PathLike[str]


# --- saving ---------------------------------------------------------------------------------------
def save_checkpoint(
    ckpt_dir: PathLike,
    policy: Policy,
    *,
    ema: nn.Module | Mapping[str, torch.Tensor] | None = None,
    config: Mapping[str, Any],
    training_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically and return its path.

    ``ema``: the EMA copy of the policy (a module of the same architecture, a torch
    ``AveragedModel`` of it, or its state dict). ``config``: the resolved run config; it must
    have ``policy.name``. ``training_state``: what resuming needs; mapping values (optimizer and
    scheduler state dicts, ...) go to ``training_state/<key>.pt``, plain values (``step`` is
    required, ``epoch``, ...) to ``state.json``. The RNG states are captured unless ``rng`` is
    given. An existing ``ckpt_dir`` is replaced.
    """
    ckpt_dir = Path(ckpt_dir)
    config = _plain_config(config, policy)
    ckpt_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{ckpt_dir.name}.", suffix=".tmp", dir=ckpt_dir.parent))
    try:
        _write_weights(tmp / MODEL_FILE, policy, ema)
        write_text_synced(tmp / CONFIG_FILE, OmegaConf.to_yaml(OmegaConf.create(config)))
        write_text_synced(tmp / SPEC_FILE, json.dumps(_spec_dict(policy), indent=2))
        if training_state is not None:
            _write_training_state(tmp / TRAINING_STATE_DIR, training_state)
        fsync_path(tmp)
        _replace_dir(tmp, ckpt_dir)
    except BaseException:  # Ctrl-C included: never leave a temporary directory behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ckpt_dir


def update_pointer(run_dir: PathLike, ckpt_dir: PathLike, name: str = LAST_POINTER) -> Path:
    """Atomically point ``<run_dir>/<name>`` (``last`` or ``best``) at ``ckpt_dir``, stored
    relative to the run dir."""
    if name not in POINTERS:
        raise ValueError(f"checkpoint pointer {name!r}: choose from {POINTERS}")
    run_dir, ckpt_dir = Path(run_dir), Path(ckpt_dir)
    if not (ckpt_dir / MODEL_FILE).is_file():
        raise FileNotFoundError(f"checkpoint dir {ckpt_dir} has no {MODEL_FILE}")
    target = os.path.relpath(ckpt_dir.resolve(), run_dir.resolve())
    return write_text_atomic(run_dir / name, target + "\n")


def capture_rng_state() -> dict[str, Any]:
    """torch, CUDA, numpy and Python RNG states as tensors and plain lists, so that
    ``torch.load(weights_only=True)`` can read them back."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- loading --------------------------------------------------------------------------------------
def resolve_checkpoint(path: PathLike) -> Path:
    """The checkpoint dir that ``path`` names: a checkpoint dir itself, a run dir whose
    ``last`` pointer is followed, or one of a run dir's pointer files (``<run_dir>/best``)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint path {path} does not exist")
    if path.is_file() and path.name in POINTERS:
        return _follow_pointer(path.parent, path.name)
    if not path.is_dir():
        raise NotADirectoryError(
            f"checkpoint path {path} is a file; give a checkpoint dir, a run dir or a run dir's "
            f"pointer ({' or '.join(POINTERS)})"
        )
    if (path / MODEL_FILE).is_file():
        return path
    if (path / LAST_POINTER).is_file():
        return _follow_pointer(path, LAST_POINTER)
    raise FileNotFoundError(
        f"checkpoint dir {path} has no {MODEL_FILE} (and no '{LAST_POINTER}' pointer to follow)"
    )


def load_policy(
    path: PathLike,
    device: str | torch.device = "cpu",
    use_ema: bool = True,
    config_changes: Mapping[str, Any] | None = None,
) -> Policy:
    """Rebuild the policy a checkpoint (or a run dir's last one) holds, in eval mode.

    Uses the EMA weights when the checkpoint has them and ``use_ema``. ``config_changes``
    replaces entries of the saved policy config before the policy is built: settings that hold
    no weights, such as the sampler of a diffusion policy (``{"sampler": "ddpm"}``), its number
    of steps, or ``n_action_steps``, so that one checkpoint can be evaluated several ways. A
    key the policy's config lacks, or a change that alters the network (its weights then do
    not fit), raises ``ValueError`` naming it.
    """
    ckpt = resolve_checkpoint(path)
    meta = read_spec(ckpt)
    cls = policy_class(meta["policy"]["name"])
    saved = meta["policy"]["config"]
    changes = dict(config_changes or {})
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(cls.Config)})
    if unknown:
        raise ValueError(
            f"policy config change {unknown[0]!r}: policy {cls.name!r} has no such setting"
        )
    cfg = from_dict(cls.Config, _merged(saved, changes), "policy.")
    policy = cls(cfg, ObsSpec.from_dict(meta["obs_spec"]), Normalizer(meta["normalizer"]))
    tensors = load_file(ckpt / MODEL_FILE)
    has_ema = any(k.startswith(EMA_PREFIX) for k in tensors)
    prefix = EMA_PREFIX if use_ema and has_ema else POLICY_PREFIX
    weights = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    does_not_fit = f"checkpoint {ckpt} does not fit policy {cls.name!r}" + (
        f" with config changes {changes}" if changes else ""
    )
    try:
        missing, unexpected = policy.load_state_dict(weights, strict=False)
    except RuntimeError as err:  # a weight of another shape
        raise ValueError(f"{does_not_fit}: {str(err).splitlines()[-1].strip()}") from None
    if missing or unexpected:
        raise ValueError(
            f"{does_not_fit}: missing weights {missing[:5]}, unexpected weights {unexpected[:5]}"
        )
    return policy.to(device).eval()


def _merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied key by key, nested mappings merged rather than replaced
    (``{"mlp": {"hidden_dim": 64}}`` keeps the saved ``mlp.num_blocks``)."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            value = _merged(merged[key], value)
        merged[key] = value
    return merged


def read_spec(path: PathLike) -> dict[str, Any]:
    """The checkpoint's ``spec.json`` (obs spec, normaliser stats, policy name and config)."""
    ckpt = resolve_checkpoint(path)
    try:
        meta = json.loads((ckpt / SPEC_FILE).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint dir {ckpt} has no {SPEC_FILE}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"checkpoint dir {ckpt}: {SPEC_FILE} is not valid JSON: {err}") from None
    missing = [k for k in ("obs_spec", "normalizer", "policy") if k not in meta]
    if missing:
        raise ValueError(f"checkpoint dir {ckpt}: {SPEC_FILE} lacks {missing[0]!r}")
    return meta


def load_config(path: PathLike) -> dict[str, Any]:
    """The resolved run config a checkpoint was trained with (e.g. to rebuild its task)."""
    ckpt = resolve_checkpoint(path)
    return OmegaConf.to_container(OmegaConf.load(ckpt / CONFIG_FILE), resolve=True)


def load_training_state(ckpt_dir: PathLike) -> dict[str, Any]:
    """What :func:`save_checkpoint` got as ``training_state`` (with ``rng``), loaded without
    unpickling code."""
    ckpt = resolve_checkpoint(ckpt_dir)
    state_dir = ckpt / TRAINING_STATE_DIR
    if not (state_dir / STATE_FILE).is_file():
        raise FileNotFoundError(
            f"checkpoint dir {ckpt} has no {TRAINING_STATE_DIR}/{STATE_FILE}: "
            "it was saved without training state and cannot be resumed"
        )
    state: dict[str, Any] = json.loads((state_dir / STATE_FILE).read_text())
    for file in sorted(state_dir.glob("*.pt")):
        state[file.stem] = torch.load(file, map_location="cpu", weights_only=True)
    return state


def check_policy_env_compatible(policy_or_spec: Policy | ObsSpec, env_spec: ObsSpec) -> None:
    """Raise ``ValueError`` naming the differing key when the policy's observation inputs or
    its action do not match the env's ``policy`` group and action.

    Only the keys the policy reads are compared, so an env that offers more observations than a
    policy uses still fits it.
    """
    if isinstance(policy_or_spec, ObsSpec):
        spec, keys = policy_or_spec, policy_or_spec.groups["policy"]
    else:
        spec, keys = policy_or_spec.spec, policy_or_spec.obs_keys
    offered = env_spec.groups.get("policy", ())
    unoffered = [k for k in keys if k not in offered]
    if unoffered:
        raise ValueError(
            f"the policy reads observation {unoffered[0]!r}, which is not in the env's `policy` "
            f"group {list(offered)}: a policy may read only what that group offers (other terms, "
            "such as the critic's, are absent where the policy is deployed)"
        )
    mine = dataclasses.replace(spec, groups={"policy": tuple(keys)})
    theirs = dataclasses.replace(env_spec, groups={"policy": tuple(keys)})
    mine.check_compatible(theirs, "policy (here) vs env (there)")


# --- internals ------------------------------------------------------------------------------------
def _plain_config(config: Mapping[str, Any], policy: Policy) -> dict[str, Any]:
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True)
    config = dict(config)
    policy_cfg = config.get("policy")
    if not isinstance(policy_cfg, Mapping) or "name" not in policy_cfg:
        raise ValueError("checkpoint config must contain 'policy' with its 'name'")
    if policy_cfg["name"] != policy.name:
        raise ValueError(
            f"checkpoint config names policy {policy_cfg['name']!r}, but the policy is {policy.name!r}"
        )
    return config


def _spec_dict(policy: Policy) -> dict[str, Any]:
    return {
        "obs_spec": policy.spec.to_dict(),
        "normalizer": policy.normalizer.to_dict(),
        "policy": {"name": policy.name, "config": dataclasses.asdict(policy.cfg)},
        "robolearn_version": robolearn.__version__,
    }


def _write_weights(
    path: Path, policy: Policy, ema: nn.Module | Mapping[str, torch.Tensor] | None
) -> None:
    tensors = _prefixed(POLICY_PREFIX, policy.state_dict())
    if ema is not None:
        if isinstance(ema, torch.optim.swa_utils.AveragedModel):
            ema = ema.module
        if isinstance(ema, nn.Module):
            ema_state = ema.state_dict()
        elif isinstance(ema, Mapping):
            ema_state = ema
        else:
            raise TypeError(
                f"ema must be the averaged policy module or its state dict, got {type(ema).__name__}"
            )
        if set(ema_state) != set(policy.state_dict()):
            raise ValueError("EMA weights do not have the policy's parameter names")
        tensors |= _prefixed(EMA_PREFIX, ema_state)
    save_file(tensors, str(path), metadata={"format": "pt"})
    fsync_path(path)


def _prefixed(prefix: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share memory (the normaliser is registered both on the
    # policy and inside its encoder); copy a tensor whose storage was already taken.
    seen: set[int] = set()
    out = {}
    for name, value in state.items():
        tensor = value.detach().cpu().contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen:
            tensor = tensor.clone()
        seen.add(ptr)
        out[prefix + name] = tensor
    return out


def _write_training_state(state_dir: Path, training_state: Mapping[str, Any]) -> None:
    if "step" not in training_state:
        raise ValueError("training_state must contain 'step'")
    state_dir.mkdir()
    state = {"rng": capture_rng_state(), **training_state}
    plain = {k: v for k, v in state.items() if not isinstance(v, Mapping)}
    for key, value in state.items():
        if isinstance(value, Mapping):
            torch.save(dict(value), state_dir / f"{key}.pt")
            fsync_path(state_dir / f"{key}.pt")
    try:
        text = json.dumps(plain, indent=2)
    except TypeError as err:
        raise ValueError(f"training_state values must be mappings or JSON values: {err}") from None
    write_text_synced(state_dir / STATE_FILE, text)


def _follow_pointer(run_dir: Path, name: str) -> Path:
    target = (run_dir / name).read_text().strip()
    if not target:
        raise FileNotFoundError(f"run dir {run_dir}: its '{name}' pointer is empty")
    ckpt = run_dir / target
    if not (ckpt / MODEL_FILE).is_file():
        raise FileNotFoundError(
            f"run dir {run_dir}: its '{name}' pointer names {target!r}, "
            f"which is not a checkpoint ({ckpt / MODEL_FILE} does not exist)"
        )
    return ckpt


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``. POSIX cannot rename over a non-empty directory, so an existing
    ``dst`` is first moved aside and deleted afterwards."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.old")
        os.rename(dst, old)
    os.rename(src, dst)
    fsync_entry(dst.parent)  # the rename; the other checkpoints in it were synced when saved
    if old is not None:
        shutil.rmtree(old)
