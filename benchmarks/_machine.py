"""What every benchmark prints about where it ran: cores, CPU, GPU and library versions."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe(packages: tuple[str, ...] = ("torch", "numpy", "imbalanced-learn")) -> str:
    """One line: cores, CPU model, GPU (if any), torch threads and package versions."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    versions = []
    for name in packages:
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return (
        f"{os.cpu_count()} cores, {cpu_model()}, {gpu}, torch threads {torch.get_num_threads()}, "
        f"Python {platform.python_version()}; " + ", ".join(versions)
    )
