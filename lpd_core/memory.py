"""Memory before work: what a device has available, and how much of a run fits in it at once.

A run holds some things for all its images at once (the tokens it returns; the images the CLI
writes) and others only for the images being worked on (the KV cache and one step's tensors of a
generation, a tokenizer's activations). The first must fit, or the run is refused before anything
is allocated (`NotEnoughMemoryError`, with the figures and the number of images that would fit);
the second is split into chunks that fit (`largest_chunk`). Why split rather than refuse: every
image's random numbers depend on its own seed alone, so a run in chunks makes the same images, and
someone asking for 64 images on a small GPU would rather get them in chunks than not at all.

What is available: on CUDA the driver's free memory plus what torch's caching allocator holds
unused; on the CPU the kernel's MemAvailable (free RAM plus what it can reclaim without swapping),
capped by the container's memory limit. Where neither can be read (other devices, other systems)
nothing is checked. Runs plan with `USABLE_SHARE` of it: allocators fragment, other processes move.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from .errors import NotEnoughMemoryError

USABLE_SHARE = 0.9
_CGROUP_FILES = (("memory.max", "memory.current"),  # cgroup v2, then v1
                 ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"))


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _ram_available() -> int | None:
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    for limit_name, usage_name in _CGROUP_FILES:
        root = Path("/sys/fs/cgroup")
        limit, usage = _read_int(root / limit_name), _read_int(root / usage_name)
        if limit is not None and usage is not None and limit < 1 << 60:  # v1 says "no limit" with a huge number
            available = min(available, max(0, limit - usage))
    return available


def available_bytes(device) -> int | None:
    """Bytes a run can still allocate on `device` (a torch.device or its name; see the module
    docstring); None when unknown."""
    kind = str(device).partition(":")[0]
    if kind == "cuda":
        import torch  # here, not at the top: schedules (numpy only) check memory here without importing torch
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if kind == "cpu":
        return _ram_available()
    return None


def usable_bytes(device) -> int | None:
    """What a run plans with: `USABLE_SHARE` of `available_bytes`; None when unknown."""
    available = available_bytes(device)
    return None if available is None else int(available * USABLE_SHARE)


def size_text(count: int) -> str:
    """Bytes for people: 3.2 GB, 512 MB, 12 kB."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def largest_chunk(count: int, need: Callable[[int], int], budget: int) -> int:
    """The largest n in 0..count with need(n) ≤ budget, for a need that grows with n."""
    low, high = 0, count
    while low < high:
        middle = (low + high + 1) // 2
        if need(middle) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def check_fits(what: str, need: int, device, fix: str) -> None:
    """NotEnoughMemoryError, with the figures and `fix` (what to do), when `need` bytes cannot fit."""
    budget = usable_bytes(device)
    if budget is not None and need > budget:
        raise NotEnoughMemoryError(f"{what} needs {size_text(need)} of memory on {device}, and {size_text(budget)} of "
                                   f"it can be used; {fix}, or free memory (other programs, other models)")


def plan_chunks(what: str, count: int, whole_bytes: int, need: Callable[[int], int], device) -> int:
    """How many of `count` images to work on at once (`what` says what is done to them, e.g.
    "generating"): all of them when they fit, else the most that
    fit beside `whole_bytes` (what the run holds for all of them at once). NotEnoughMemoryError
    when not even one fits beside it, with the figures and how many images would fit."""
    budget = usable_bytes(device)
    if budget is None or whole_bytes + need(count) <= budget:
        return count
    chunk = largest_chunk(count, need, budget - whole_bytes)
    if chunk == 0:
        per_item = whole_bytes / count
        would_fit = largest_chunk(count, lambda n: int(per_item * n) + need(1), budget)
        fix = f"at most {would_fit} images fit in one run: ask for fewer" if would_fit else \
            "not even one image fits: use a smaller model or dtype (bf16)"
        parts = f" ({size_text(whole_bytes)} held for all of them, {size_text(need(1))} to work on one)" \
            if whole_bytes and need(1) else ""
        check_fits(f"{what} {count} images{parts}", whole_bytes + need(1), device, fix)
    return chunk


def chunk_starts(count: int, chunk: int) -> list[tuple[int, int]]:
    """(start, end) of each chunk of `chunk` items covering 0..count."""
    return [(start, min(count, start + chunk)) for start in range(0, count, chunk)]
