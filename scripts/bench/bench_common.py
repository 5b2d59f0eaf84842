"""What every benchmark script reports about the machine it ran on."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import psutil
import torch


def cpu_model() -> str:
    """The ``model name`` line of /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (affinity), which is what the batch's threads can use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def synchronizer(device: torch.device | str) -> Callable[[], None]:
    """What to call before reading a clock so that work queued on ``device`` is finished."""
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def accelerator_info() -> dict[str, Any]:
    """The GPU (if torch sees one) and the Warp build (if installed): both shape GPU figures."""
    info: dict[str, Any] = {"gpu": None, "cuda": torch.version.cuda}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": props.name,
            "count": torch.cuda.device_count(),
            "memory_gb": round(props.total_memory / 1024**3, 1),
            "multiprocessors": props.multi_processor_count,
        }
    try:
        import warp

        info["warp"] = warp.config.version
    except ImportError:
        info["warp"] = None
    return info


def machine_info() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "nproc": usable_cores(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "mujoco": mujoco.__version__,
        "numpy": np.__version__,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        **accelerator_info(),
    }


def emit_report(report: dict[str, Any], json_out: Path | None) -> None:
    """Stamp the load at the end of the run, print the report as JSON, and save it if asked."""
    report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(report, indent=2)
    print(text)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n")
