"""Wall clocks for the benchmarks that are right on a GPU too.

CUDA kernels run asynchronously: ``time.perf_counter()`` around a call that only queues
work measures the queueing. :func:`clock` first waits for the device, so the difference of
two clocks is the work done between them, on CPU (where the wait is a no-op) and CUDA alike.
"""

from __future__ import annotations

import time

import torch

__all__ = ["best_time", "clock", "describe_device", "select_device", "synchronize"]


def select_device(name: str) -> torch.device:
    """The benchmark's device, made CUDA's current device so that :func:`clock` waits for it.

    Raises:
        ValueError: naming the problem, for a string that is not a device or for CUDA asked
            for without a GPU.
    """
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device {name!r}: {err}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available here")
        torch.cuda.set_device(dev)
    return dev


def synchronize() -> None:
    """Wait for the queued work of CUDA's current device (set by :func:`select_device`)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def clock() -> float:
    """``time.perf_counter()`` after the device has finished its queued work."""
    synchronize()
    return time.perf_counter()


def best_time(fn, reps: int = 3) -> float:
    """Minimum wall time of ``reps`` calls of ``fn()`` after one warm-up call."""
    fn()
    out = []
    for _ in range(reps):
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return min(out)


def describe_device(device: str | torch.device) -> str:
    """What a results file states about the device: 'cpu (N threads)' or the GPU's name."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({torch.get_num_threads()} threads)"
