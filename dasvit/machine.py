"""Which machine a figure was measured on, in the words every result file uses."""

from __future__ import annotations

import os
import platform

import torch


def describe_machine() -> str:
    """``x86_64 CPU (AVX512), 2 cores, torch 2.14.1``: what a CPU result needs beside it to be read or reproduced
    (the kernels torch picks for the CPU's instruction set change the rounding of a long training)."""
    return (f"{platform.machine()} CPU ({torch.backends.cpu.get_cpu_capability()}), {os.cpu_count()} cores, "
            f"torch {torch.__version__}")
