"""Which machine a figure was measured on, in the words every result file uses."""

from __future__ import annotations

import os
import platform

import torch


def describe_machine() -> str:
    """``x86_64 CPU, 2 cores, torch 2.14.1``: what a CPU result needs beside it to be read or reproduced."""
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}"
