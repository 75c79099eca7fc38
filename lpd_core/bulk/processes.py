"""The processes torchrun starts: joining their group, collectives, and SIGTERM as Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from dataclasses import dataclass
from datetime import timedelta

import torch

from ..weights import resolve_device

PROCESS_GROUP_TIMEOUT = timedelta(hours=2)  # rank 0 may be downloading while the others wait


@dataclass
class Processes:
    """Where this process stands among those torchrun started (or alone: rank 0 of 1)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False
    device: torch.device | None = None  # for object collectives under nccl

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def broadcast(self, value):
        """rank 0's `value`, on every rank."""
        if not self.distributed:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def close(self) -> None:
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def start_processes(device: str = "auto") -> tuple[Processes, str]:
    """Join torchrun's process group (env:// from RANK, WORLD_SIZE, MASTER_ADDR, …): nccl on
    GPU, gloo on CPU. Without torchrun (no WORLD_SIZE, or 1) there is no group. The device is
    checked first (`weights.resolve_device`: DeviceError if unavailable)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device, local_rank)
    if world_size <= 1:
        return Processes(), device
    rank = int(os.environ["RANK"])
    on_gpu = device.startswith("cuda")
    if on_gpu:
        torch.cuda.set_device(torch.device(device))
    torch.distributed.init_process_group("nccl" if on_gpu else "gloo", init_method="env://",
                                         timeout=PROCESS_GROUP_TIMEOUT)
    return Processes(rank, world_size, local_rank, True, torch.device(device) if on_gpu else None), device


@contextlib.contextmanager
def sigterm_as_interrupt():
    """torchrun stops workers with SIGTERM (on Ctrl-C, or when another worker fails): treat it like
    Ctrl-C, so the current batch is abandoned cleanly and the process group is destroyed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
