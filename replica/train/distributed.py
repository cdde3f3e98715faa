"""Process-group helpers: who writes, waiting for each other, and a clean exit.

Under `accelerate launch` every rank runs the same pipeline; the Trainer sets up the process
group. Only the main process writes artifacts and the registry. The group is destroyed at the
end so gloo/NCCL do not abort at interpreter exit.
"""

from __future__ import annotations

import os

import torch.distributed as dist


def is_main_process() -> bool:
    """Rank 0 of the whole job (also True when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group cleanly after the last collective."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
