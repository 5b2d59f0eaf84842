"""Episodes in robomimic's HDF5 schema: write atomically, validate, read. numpy in, numpy out.

robomimic's schema is the native format so that robomimic, robosuite and diffusion_policy users
can bring their files and take ours. Layout (``T`` = steps of a demo)::

    data/                   attrs: total (int, sum of num_samples), env_args (JSON string)
      demo_<i>/             attrs: num_samples (int, T), plus caller attrs (e.g. success)
        obs/<key>           (T, *shape)  one per observation term; images uint8 HWC
        next_obs/<key>      (T, *shape)  observation after actions[t]            (optional)
        actions             (T, A)       float32; absent in observation-only demos
        rewards             (T,)         float32                                 (optional)
        dones               (T,)         uint8, 1 on the demo's last step
        states              (T, S)       float64 simulator state at obs[t]       (optional)
    mask/train, mask/valid  byte strings (S), names of the demos in each split

``env_args`` carries what is needed to rebuild the source and check compatibility:
``env_name``, ``type`` (``"robolearn"``, which no robomimic env type matches, so robomimic
never tries to build one of its own envs from it), ``obs_spec`` (``ObsSpec.to_dict()``),
``robolearn_version``, and whatever the writer's caller adds (``env_kwargs``, state layout).

Datasets are chunked along time (up to 1 MiB per chunk, so a chunk fits h5py's default chunk
cache and a training window reads one or two chunks); image terms are gzip-compressed.
Files use HDF5 1.10 object formats (see :data:`LIBVER`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

import robolearn
from robolearn.spec import ObsSpec
from robolearn.utils.files import fsync_path

IMAGE_MODALITIES = ("rgb", "depth")
CHUNK_BYTES = 1 << 20
#: HDF5 1.10 object formats: a sixth of the default's per-dataset overhead for many short
#: demos, and readable by every HDF5 since 2016 (robomimic, diffusion_policy, h5py >= 2.10).
LIBVER = ("v110", "v110")
_DEMO = re.compile(r"demo_(\d+)")


class DatasetError(ValueError):
    """A file that does not follow the schema; names the file and the first offending HDF5 path."""

    def __init__(self, file: str | os.PathLike, hdf5_path: str, problem: str):
        self.file, self.hdf5_path, self.problem = Path(file), hdf5_path, problem
        super().__init__(f"{file}: {hdf5_path}: {problem}")


def demo_sort_key(name: str) -> int:
    """``demo_10`` after ``demo_9``: robomimic files are enumerated in numeric order."""
    match = _DEMO.fullmatch(name)
    return int(match.group(1)) if match else -1


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Fail now, before any collection work, if ``path`` cannot receive a dataset.

    Creates missing parent folders and proves the folder writable by creating a file in it
    (``os.access`` says yes to root even on read-only mounts).
    """
    path = Path(path).expanduser().absolute()
    if path.is_dir():
        raise IsADirectoryError(f"output path {path} is a directory; give a file name")
    if path.exists() and not overwrite:
        raise FileExistsError(f"output file {path} exists; pass overwrite=true to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise PermissionError(f"cannot write output file {path}: {e.strerror or e}") from e
    return path


class EpisodeWriter:
    """Append complete episodes to a new dataset that appears at ``path`` only when finished.

    Everything goes to a temporary file beside ``path`` that :meth:`close` finalises (totals,
    train/valid masks) and renames over ``path`` with ``os.replace``, so readers never see a
    half-written dataset and an existing file survives a failed run untouched. Used as a
    context manager: an exception discards the temporary file, but ``KeyboardInterrupt``
    publishes the episodes completed so far (an interrupted collection keeps its work).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        env_args: Mapping[str, Any],
        spec: ObsSpec | None = None,
        *,
        overwrite: bool = False,
        valid_fraction: float = 0.1,
        seed: int = 0,
    ):
        if not 0.0 <= valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
        self.path = check_output_path(path, overwrite)
        self.spec, self.overwrite = spec, overwrite
        self.valid_fraction, self.seed = valid_fraction, seed
        args = {"type": "robolearn", "robolearn_version": robolearn.__version__, **env_args}
        if spec is not None:
            args["obs_spec"] = spec.to_dict()
        try:
            env_args_json = json.dumps(args, sort_keys=True)
        except TypeError as e:
            raise ValueError(f"env_args must be JSON-serialisable: {e}") from e
        # Beside the target, so that os.replace is a rename within one file system; a random
        # name so that concurrent writers of the same path do not collide. Created by HDF5 (not
        # mkstemp) so that the file gets the usual umask permissions.
        self._tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        self._file: h5py.File | None = h5py.File(self._tmp, "x", libver=LIBVER)
        self._data = self._file.create_group("data")
        self._data.attrs["env_args"] = env_args_json
        self._num_published = 0
        self._obs_layout: _Layout | None = None
        self._widths: dict[str, int] = {}  # actions/states: one width for the whole file
        if spec is not None:
            self._widths["actions"] = spec.action.dim
        self._published: Path | None = None

    @property
    def num_episodes(self) -> int:
        """Episodes written (while open), or published (after :meth:`close`)."""
        return len(self._data) if self._file is not None else self._num_published

    def add_episode(
        self,
        obs: Mapping[str, np.ndarray],
        *,
        actions: np.ndarray | None = None,
        rewards: np.ndarray | None = None,
        dones: np.ndarray | None = None,
        states: np.ndarray | None = None,
        next_obs: Mapping[str, np.ndarray] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> str:
        """Write one complete episode and return its demo name.

        Arrays are time-major with the same length ``T``. ``dones`` defaults to 1 on the last
        step only (every episode handed in is complete). Bad input raises ``ValueError`` naming
        the array, and an episode interrupted while being written leaves no trace.
        """
        if self._file is None:
            raise RuntimeError(f"EpisodeWriter for {self.path} is closed")
        obs_arrays = self._check_obs(obs, "obs", self._obs_layout)
        steps = len(next(iter(obs_arrays.values())))
        if dones is None:
            dones = np.zeros(steps, np.uint8)
            dones[-1] = 1
        arrays = {f"obs/{k}": v for k, v in obs_arrays.items()}
        if next_obs is not None:
            checked = self._check_obs(next_obs, "next_obs", _layout(obs_arrays))
            arrays |= {f"next_obs/{k}": v for k, v in checked.items()}
        for name, value, ndim, dtype in (
            ("actions", actions, 2, np.float32),
            ("rewards", rewards, 1, np.float32),
            ("dones", dones, 1, np.uint8),
            ("states", states, 2, np.float64),
        ):
            if value is not None:
                arrays[name] = _checked(name, np.asarray(value), ndim, dtype)
        for name, value in arrays.items():
            if len(value) != steps:
                raise ValueError(f"{name} has {len(value)} steps, obs has {steps}")
        if not np.isin(arrays["dones"], (0, 1)).all():
            raise ValueError("dones must be 0 or 1")
        self._check_widths(arrays)

        name = f"demo_{len(self._data)}"
        try:
            group = self._data.create_group(name)
            for key, value in arrays.items():
                image = "/" in key and self._is_image(key.split("/")[1], obs_arrays)
                group.create_dataset(
                    key,
                    data=value,
                    chunks=_time_chunks(value),
                    compression="gzip" if image else None,
                )
            group.attrs["num_samples"] = steps
            for key, value in (attrs or {}).items():
                group.attrs[key] = value
        except BaseException:  # KeyboardInterrupt included: no half-written demo survives
            if name in self._data:
                del self._data[name]
            raise
        self._obs_layout = _layout(obs_arrays)
        self._widths |= {k: arrays[k].shape[1] for k in ("actions", "states") if k in arrays}
        return name

    def close(self) -> Path | None:
        """Finalise and publish the dataset; ``None`` (and no file) if no episode was written.

        An empty dataset is not valid input to anything, so it is never published; an existing
        file at ``path`` is then left as it was. Closing twice returns the first result.
        """
        if self._file is None:
            return self._published
        # The file's own demo groups are the truth: a group exists only once complete (see
        # add_episode), whenever a KeyboardInterrupt arrived.
        names = sorted(self._data.keys(), key=demo_sort_key)
        if not names:
            self.discard()
            return None
        self._data.attrs["total"] = sum(int(self._data[n].attrs["num_samples"]) for n in names)
        self._write_masks(names)
        self._num_published = len(names)
        self._file.close()
        self._file = None
        if self.path.exists() and not self.overwrite:
            self._tmp.unlink()
            raise FileExistsError(f"output file {self.path} appeared while writing; not replaced")
        fsync_path(self._tmp)  # on disk before it takes the name (and replaces a good file)
        os.replace(self._tmp, self.path)
        fsync_path(self.path.parent)
        self._published = self.path
        return self.path

    def discard(self) -> None:
        """Drop everything written; ``path`` is left as it was."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.close()
        else:
            self.discard()

    # --- internals ---------------------------------------------------------------------------
    def _is_image(self, key: str, obs: Mapping[str, np.ndarray]) -> bool:
        if self.spec is not None:
            return self.spec.terms[key].modality in IMAGE_MODALITIES
        return obs[key].dtype == np.uint8 and obs[key].ndim == 4  # (T, H, W, C)

    def _check_obs(
        self, obs: Mapping[str, np.ndarray], where: str, reference: _Layout | None
    ) -> dict[str, np.ndarray]:
        """Keys, per-step shapes and dtypes as the spec says and as in ``reference``."""
        if not obs:
            raise ValueError(f"{where} is empty: an episode needs at least one observation term")
        out = {}
        for key, value in obs.items():
            value = np.asarray(value)
            if value.ndim < 1 or len(value) == 0:
                raise ValueError(f"{where}/{key} must be time-major with at least one step")
            term = self.spec.terms.get(key) if self.spec is not None else None
            if self.spec is not None and term is None:
                raise ValueError(f"{where}/{key} is not a term of the ObsSpec")
            if term is not None:
                if value.shape[1:] != term.shape:
                    raise ValueError(
                        f"{where}/{key} has per-step shape {value.shape[1:]}, spec says {term.shape}"
                    )
                if term.modality in IMAGE_MODALITIES and value.dtype != np.dtype(term.dtype):
                    raise ValueError(f"{where}/{key} must be {term.dtype}, got {value.dtype}")
                value = value.astype(term.dtype, copy=False)
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise ValueError(f"{where}/{key} contains NaN or Inf")
            out[key] = value
        lengths = {len(v) for v in out.values()}
        if len(lengths) > 1:
            raise ValueError(
                f"{where} terms differ in length: { {k: len(v) for k, v in out.items()} }"
            )
        layout = _layout(out)
        if reference is not None and layout != reference:
            key = next(
                k
                for k in sorted(layout.keys() | reference.keys())
                if layout.get(k) != reference.get(k)
            )
            raise ValueError(
                f"{where}/{key}: (shape, dtype) {layout.get(key)} differs from {reference.get(key)} "
                "of the earlier episodes"
            )
        return out

    def _check_widths(self, arrays: Mapping[str, np.ndarray]) -> None:
        for key, width in self._widths.items():
            if key in arrays and arrays[key].shape[1] != width:
                raise ValueError(
                    f"{key} have width {arrays[key].shape[1]}, expected {width} "
                    "(the spec's action dim, or that of earlier episodes)"
                )

    def _write_masks(self, names: list[str]) -> None:
        """robomimic's train/valid split: a seeded shuffle, at least one demo on each side."""
        n = len(names)
        n_valid = round(self.valid_fraction * n)
        if self.valid_fraction > 0 and n > 1:
            n_valid = min(max(n_valid, 1), n - 1)
        order = np.random.default_rng(self.seed).permutation(n)
        valid = sorted((names[i] for i in order[:n_valid]), key=demo_sort_key)
        train = sorted((names[i] for i in order[n_valid:]), key=demo_sort_key)
        mask = self._file.create_group("mask")
        mask.create_dataset("train", data=np.array(train, dtype="S"))
        mask.create_dataset("valid", data=np.array(valid, dtype="S"))


_Layout = dict[str, tuple[tuple[int, ...], np.dtype]]


def _layout(obs: Mapping[str, np.ndarray]) -> _Layout:
    return {k: (v.shape[1:], v.dtype) for k, v in obs.items()}


def _checked(name: str, value: np.ndarray, ndim: int, dtype: type) -> np.ndarray:
    if value.ndim != ndim:
        raise ValueError(
            f"{name} must have {ndim} dimensions (time first), got shape {value.shape}"
        )
    if value.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {value.dtype}")
    value = value.astype(dtype, copy=False)
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return value


def _time_chunks(value: np.ndarray) -> tuple[int, ...]:
    """Whole steps per chunk, as many as fit in ``CHUNK_BYTES``."""
    step_bytes = max(1, value[0].nbytes)
    rows = int(min(len(value), max(1, CHUNK_BYTES // step_bytes)))
    return (rows, *value.shape[1:])


# --- reading and validation ------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetInfo:
    """What :func:`validate_dataset` learned about a valid file."""

    path: Path
    demos: tuple[str, ...]
    total_samples: int
    obs_keys: dict[str, tuple[tuple[int, ...], str]]  # per-step shape and dtype
    action_dim: int | None
    demos_without_actions: tuple[str, ...]  # observation-only episodes
    masks: dict[str, tuple[str, ...]]
    env_args: dict[str, Any]
    spec: ObsSpec | None

    @property
    def observation_only(self) -> bool:
        """No demo has actions: usable for imitation from observation, not for BC."""
        return len(self.demos_without_actions) == len(self.demos)


def validate_dataset(path: str | os.PathLike) -> DatasetInfo:
    """Check a file against the schema; raise :class:`DatasetError` at the first offending path.

    Checks structure, lengths (every array of a demo has ``num_samples`` rows, ``data.total``
    is their sum), consistency across demos (same obs keys and shapes, same action and state
    sizes), agreement with the ``ObsSpec`` in ``env_args`` when there is one, finite values,
    0/1 dones, and masks that name existing demos.
    """
    path = Path(path)
    try:
        file = h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise DatasetError(path, "/", f"cannot open as HDF5 ({e})") from e
    with file:
        return _Validator(path, file).run()


class _Validator:
    def __init__(self, path: Path, file: h5py.File):
        self.path, self.file = path, file
        self.obs_keys: dict[str, tuple[tuple[int, ...], str]] | None = None
        self.sizes: dict[str, int] = {}  # actions/states width shared by every demo

    def fail(self, where: str, problem: str) -> DatasetError:
        return DatasetError(self.path, where, problem)

    def run(self) -> DatasetInfo:
        data = self.file.get("data")
        if not isinstance(data, h5py.Group):
            raise self.fail("/data", "missing group")
        env_args = self.env_args(data)
        spec = self.spec(env_args)
        demos = sorted(data.keys(), key=demo_sort_key)
        for name in demos:
            if demo_sort_key(name) < 0:
                raise self.fail(f"/data/{name}", "unexpected member; expected demo_<i> groups")
        if not demos:
            raise self.fail("/data", "no demo_<i> groups")
        total, without_actions = 0, []
        for name in demos:
            steps, has_actions = self.demo(data, name, spec)
            total += steps
            if not has_actions:
                without_actions.append(name)
        if "total" not in data.attrs:
            raise self.fail("/data", "missing attribute 'total'")
        if int(data.attrs["total"]) != total:
            raise self.fail(
                "/data", f"attribute total={int(data.attrs['total'])}, demos sum to {total}"
            )
        return DatasetInfo(
            path=self.path,
            demos=tuple(demos),
            total_samples=total,
            obs_keys=dict(self.obs_keys or {}),
            action_dim=self.sizes.get("actions"),
            demos_without_actions=tuple(without_actions),
            masks=self.masks(set(demos)),
            env_args=env_args,
            spec=spec,
        )

    def env_args(self, data: h5py.Group) -> dict[str, Any]:
        where = "/data.attrs['env_args']"
        if "env_args" not in data.attrs:
            raise self.fail("/data", "missing attribute 'env_args'")
        raw = data.attrs["env_args"]
        try:
            value = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise self.fail(where, f"not JSON ({e})") from e
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a JSON object, got {type(value).__name__}")
        return value

    def spec(self, env_args: dict[str, Any]) -> ObsSpec | None:
        if "obs_spec" not in env_args:
            return None  # a foreign robomimic file: fine, but nothing to check against
        try:
            return ObsSpec.from_dict(env_args["obs_spec"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise self.fail("/data.attrs['env_args']", f"obs_spec is not an ObsSpec ({e!r})") from e

    def demo(self, data: h5py.Group, name: str, spec: ObsSpec | None) -> tuple[int, bool]:
        where = f"/data/{name}"
        demo = data[name]
        if not isinstance(demo, h5py.Group):
            raise self.fail(where, "must be a group")
        raw = demo.attrs.get("num_samples")
        if raw is None:
            raise self.fail(where, "missing attribute 'num_samples'")
        if not np.issubdtype(np.asarray(raw).dtype, np.integer) or int(raw) < 1:
            raise self.fail(where, f"num_samples must be a positive integer, got {raw!r}")
        steps = int(raw)
        obs = demo.get("obs")
        if not isinstance(obs, h5py.Group) or not len(obs):
            raise self.fail(f"{where}/obs", "missing group or no observation keys")
        self.observations(obs, f"{where}/obs", steps, spec)
        if "next_obs" in demo:
            self.observations(demo["next_obs"], f"{where}/next_obs", steps, spec)
        for key, ndim in (("actions", 2), ("rewards", 1), ("dones", 1), ("states", 2)):
            if key in demo:
                self.array(demo[key], f"{where}/{key}", steps, ndim)
        if spec is not None and "actions" in demo and self.sizes["actions"] != spec.action.dim:
            raise self.fail(
                f"{where}/actions",
                f"action dim {self.sizes['actions']}, obs_spec says {spec.action.dim}",
            )
        if "dones" in demo and not np.isin(demo["dones"][()], (0, 1)).all():
            raise self.fail(f"{where}/dones", "values other than 0 and 1")
        return steps, "actions" in demo

    def observations(self, group: h5py.Group, where: str, steps: int, spec: ObsSpec | None) -> None:
        if not isinstance(group, h5py.Group):
            raise self.fail(where, "must be a group")
        layout = {}
        for key in sorted(group.keys()):
            ds = group[key]
            self.array(ds, f"{where}/{key}", steps, None)
            layout[key] = (tuple(ds.shape[1:]), str(ds.dtype))
            term = spec.terms.get(key) if spec is not None else None
            if spec is not None and term is None:
                raise self.fail(f"{where}/{key}", "not a term of the obs_spec in env_args")
            if term is not None and tuple(ds.shape[1:]) != term.shape:
                raise self.fail(
                    f"{where}/{key}", f"per-step shape {ds.shape[1:]}, obs_spec says {term.shape}"
                )
        if self.obs_keys is None:
            self.obs_keys = layout
        for key in sorted(self.obs_keys.keys() | layout.keys()):
            if key not in layout:
                raise self.fail(f"{where}/{key}", "missing (the first demo has it)")
            if key not in self.obs_keys:
                raise self.fail(f"{where}/{key}", "not in the first demo")
            if layout[key] != self.obs_keys[key]:
                raise self.fail(
                    f"{where}/{key}",
                    f"shape/dtype {layout[key]}, first demo has {self.obs_keys[key]}",
                )

    def array(self, ds: Any, where: str, steps: int, ndim: int | None) -> None:
        if not isinstance(ds, h5py.Dataset):
            raise self.fail(where, "must be a dataset")
        if ndim is not None and ds.ndim != ndim:
            raise self.fail(where, f"must have {ndim} dimensions, has shape {ds.shape}")
        if ds.ndim == 0 or ds.shape[0] != steps:
            raise self.fail(
                where, f"has {ds.shape[0] if ds.ndim else 0} steps, num_samples is {steps}"
            )
        if ds.dtype.kind not in "biuf":
            raise self.fail(where, f"must be numeric, has dtype {ds.dtype}")
        if ds.dtype.kind == "f" and not np.isfinite(ds[()]).all():
            raise self.fail(where, "contains NaN or Inf")
        name = where.rsplit("/", 1)[1]
        if ndim == 2:  # actions and states: one width for the whole dataset
            width = self.sizes.setdefault(name, ds.shape[1])
            if ds.shape[1] != width:
                raise self.fail(where, f"width {ds.shape[1]}, earlier demos have {width}")

    def masks(self, demos: set[str]) -> dict[str, tuple[str, ...]]:
        group = self.file.get("mask")
        if group is None:
            return {}
        if not isinstance(group, h5py.Group):
            raise self.fail("/mask", "must be a group")
        masks = {}
        for key in sorted(group.keys()):
            ds = group[key]
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.dtype.kind not in "SO":
                raise self.fail(f"/mask/{key}", "must be a 1-D array of demo names")
            names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in ds[()])
            missing = [n for n in names if n not in demos]
            if missing:
                raise self.fail(f"/mask/{key}", f"names missing demos {missing[:5]}")
            masks[key] = names
        return masks


class DemoFile:
    """Read-only access to a dataset: its demos, one episode at a time, its ``ObsSpec``.

    Opens the file lazily on first use, so that a copy made before DataLoader workers fork
    opens its own handle in each worker. It does not validate; run :func:`validate_dataset`
    once on files of unknown origin.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"dataset not found: {self.path}")
        self._file: h5py.File | None = None

    @property
    def file(self) -> h5py.File:
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        return self._file

    @property
    def demos(self) -> tuple[str, ...]:
        return tuple(sorted(self.file["data"].keys(), key=demo_sort_key))

    @property
    def env_args(self) -> dict[str, Any]:
        return json.loads(self.file["data"].attrs["env_args"])

    def obs_spec(self) -> ObsSpec:
        args = self.env_args
        if "obs_spec" not in args:
            raise DatasetError(self.path, "/data.attrs['env_args']", "has no obs_spec")
        return ObsSpec.from_dict(args["obs_spec"])

    def mask(self, split: str) -> tuple[str, ...]:
        """Demo names of a split (``train``/``valid``); all demos if the file has no masks."""
        if "mask" not in self.file:
            return self.demos
        if split not in self.file["mask"]:
            raise KeyError(f"{self.path}: no mask {split!r}; has {sorted(self.file['mask'])}")
        return tuple(n.decode() for n in self.file["mask"][split][()])

    def num_samples(self, demo: str) -> int:
        return int(self.file["data"][demo].attrs["num_samples"])

    def episode(self, demo: str) -> dict[str, Any]:
        """One demo as numpy arrays: ``obs``/``next_obs`` dicts by key, the rest by name."""
        group = self.file["data"][demo]
        out: dict[str, Any] = {}
        for key, item in group.items():
            if isinstance(item, h5py.Group):
                out[key] = {k: v[()] for k, v in item.items()}
            else:
                out[key] = item[()]
        return out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> DemoFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_file": None}  # h5py handles do not cross processes
