"""What the Hydra entry points share: one-line errors for bad input, exit status 2.

Bad input is anything the user can fix by changing the command line or the files it names: a
typo'd config key, a value of the wrong type, a missing or corrupt dataset. It gets one line on
stderr naming the culprit and exit status 2, whether Hydra finds it while composing the config
(unknown key, unknown config group option, unparsable override) or our code does while reading
it. Everything else keeps its traceback: it is a bug.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import torch
from hydra.errors import CompactHydraException
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from robolearn.spec import ObsSpec

#: Exceptions our own checks raise for bad input (DatasetError is a ValueError).
BAD_INPUT = (ValueError, OSError, KeyError)
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
Settings = TypeVar("Settings")


def fail(prog: str, error: BaseException | str) -> NoReturn:
    """Print ``prog: error: <one line>`` to stderr and exit with status 2."""
    message = error if isinstance(error, str) else _message(error)
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def run_hydra_main(prog: str, hydra_main: Callable[[], None]) -> None:
    """Call a ``@hydra.main`` function; Hydra's own config errors become :func:`fail`.

    Hydra prints its config errors over several lines and exits 1, the status of a crash. With
    ``HYDRA_FULL_ERROR`` set it raises them instead, so that they can be reported like ours.
    """
    with _env("HYDRA_FULL_ERROR", "1"):
        try:
            hydra_main()
        except CompactHydraException as e:
            fail(prog, _hydra_message(e))


def demo_task_config(
    task: str, task_cfg: dict[str, Any], cli_overrides: Sequence[str]
) -> dict[str, Any]:
    """The task settings to collect ``task``'s scripted demos under: the composed task config
    ``task_cfg`` less the keys the expert sets for its demos
    (:attr:`~robolearn.experts.ScriptedExpert.demo_task_overrides`), unless the command line
    (``cli_overrides``, Hydra's ``task.<key>=...`` strings) set them itself."""
    from robolearn.experts import expert_class

    explicit = {
        o.lstrip("+~").split("=", 1)[0].removeprefix("task.")
        for o in cli_overrides
        if o.lstrip("+~").startswith("task.")
    }
    expert_keys = expert_class(task).demo_task_overrides
    return {k: v for k, v in task_cfg.items() if k not in expert_keys or k in explicit}


def checkpoint_settings(
    prog: str, cfg: DictConfig, schema: type[Settings], purpose: str
) -> tuple[Settings, Path]:
    """The validated settings of a command that takes ``checkpoint=`` and the checkpoint dir it
    names (a run dir resolves to its last checkpoint); bad input fails with a one-line error."""
    from robolearn.checkpoint import resolve_checkpoint
    from robolearn.utils.config import from_dict

    if OmegaConf.is_missing(cfg, "checkpoint"):
        fail(prog, f"give the policy to {purpose}: checkpoint=<run dir or checkpoint dir>")
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    try:
        settings = from_dict(schema, data)
        return settings, resolve_checkpoint(to_absolute_path(settings.checkpoint))
    except BAD_INPUT as e:
        fail(prog, e)


def plain_config(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """A composed config as plain, resolved containers."""
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    assert isinstance(data, dict)
    return data


def resume_config(
    checkpoint: Path,
    saved: dict[str, Any],
    current: dict[str, Any],
    command_line: Sequence[str],
    resumable: Sequence[str],
) -> dict[str, Any]:
    """A checkpoint's ``saved`` config with the command line's overrides of ``resumable`` keys
    (and keys under them) taken from the ``current`` composed config; any other override is
    refused: the run's config comes from its checkpoint."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    config = OmegaConf.create(saved)
    composed = OmegaConf.create(current)
    for override in OverridesParser.create().parse_overrides(list(command_line)):
        key = override.key_or_group
        if override.is_delete() or not any(key == r or key.startswith(r + ".") for r in resumable):
            raise ValueError(
                f"cannot override {key!r} when resuming: the run's config comes from its "
                f"checkpoint; only {', '.join(r for r in resumable if r != 'resume')} may change"
            )
        OmegaConf.update(config, key, OmegaConf.select(composed, key), merge=False)
    config.resume = str(checkpoint)
    return plain_config(config)


def parse_device(name: str | None, default: str | torch.device = "cpu") -> torch.device:
    """``name`` as a torch device (``default`` when None), refusing one this machine lacks."""
    if name is None:
        return torch.device(default)
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"device {name!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available on this machine")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def env_spec(task: str, task_cfg: dict[str, Any]) -> ObsSpec:
    """The observation/action spec of ``task`` with ``task_cfg`` (also checks both)."""
    from robolearn.envs.vec_env import VecEnv

    env = VecEnv(task, 1, task_overrides=task_cfg)
    try:
        return env.spec
    finally:
        env.close()


def one_line(message: str) -> str:
    """Join a multi-line message into one line."""
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


def _hydra_message(error: CompactHydraException) -> str:
    """Hydra's multi-line config errors as one line, e.g. ``Could not override 'train.stpes':
    Key 'stpes' is not in struct (to append to your config use +train.stpes=5)`` or
    ``Could not find 'policy/nope'; available options in 'policy': bc, diffusion, edm``."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if "Config search path:" in lines:  # where Hydra looked: noise to a user
        lines = lines[: lines.index("Config search path:")]
    head, rest = lines[0], lines[1:]
    if error.__cause__ is not None:
        head = f"{head.rstrip('.')}: {_message(error.__cause__).splitlines()[0]}"
    if rest and rest[0].endswith(":"):  # "Available options in 'policy':" and one per line
        return f"{head}; {rest[0][0].lower()}{rest[0][1:]} {', '.join(rest[1:])}"
    if rest:
        return f"{head} ({rest[0][0].lower()}{rest[0][1:]})"
    return head


def _message(error: BaseException) -> str:
    # KeyError's str() is the repr of its argument: quoted, hard to read.
    if isinstance(error, KeyError) and len(error.args) == 1:
        return str(error.args[0])
    lines = [line for line in str(error).splitlines() if line.strip()]
    # OmegaConf appends "full_key: ..., object_type=..." lines that repeat what the first says.
    return "\n".join(
        line for line in lines if not line.strip().startswith(("full_key:", "object_type="))
    )


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous
