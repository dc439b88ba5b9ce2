"""How this process was started: `accelerate launch` and torchrun start several processes
together and tell each its place through the environment (WORLD_SIZE, RANK); a plain command
sets neither and is the one process."""

from __future__ import annotations

import os


def world_size() -> int:
    """Processes started together by accelerate launch / torchrun (from their environment), else 1."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def main_process() -> bool:
    """Whether this is the process that writes files and prints results (rank 0)."""
    return int(os.environ.get("RANK", "0") or 0) == 0
