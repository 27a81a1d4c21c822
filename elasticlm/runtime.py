"""Where and how a process computes: its place in a data-parallel run (`Dist`), the device it runs
on and its precision (bf16 autocast or fp32). Training, search, export and benchmarks all resolve
these the same way, through this module."""

from __future__ import annotations

import atexit
import functools
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def resolve_device(device: str = "auto") -> torch.device:
    """`device` resolved: with "auto", GPU `LOCAL_RANK` when CUDA is available, else the CPU."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


def resolve_bf16(precision: str = "auto") -> bool:
    """Whether `precision` ("bf16", "fp32" or "auto") means computing under bf16 autocast here."""
    return precision == "bf16" or (precision == "auto" and bf16_is_faster())


@functools.lru_cache(maxsize=None)
def bf16_is_faster(n: int = 1024) -> bool:
    """True when a bf16 matrix product beats fp32 here by 20% or more (timed once, ~0.1 s). Some
    CPUs advertise bf16 instructions yet run bf16 products slower than fp32."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    times = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.mm(a, b)
        start = time.perf_counter()
        for _ in range(3):
            torch.mm(a, b)
        times[dtype] = time.perf_counter() - start
    return times[torch.bfloat16] < 0.8 * times[torch.float32]


def autocast(bf16: bool, device: str = "cpu"):
    """bf16 autocast when asked, else nothing (fp32)."""
    return torch.autocast(device, dtype=torch.bfloat16) if bf16 else nullcontext()


def _close_process_group() -> None:
    """Leave the process group at exit, after every rank got there: a gloo group left open when the
    interpreter ends can abort a rank ("terminate called without an active exception")."""
    import torch.distributed as td

    if td.is_available() and td.is_initialized():
        try:
            td.barrier()
        finally:
            td.destroy_process_group()


@dataclass
class Dist:
    """This process's place in a data-parallel run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls) -> "Dist":
        """Join the process group torchrun describes (gloo on CPU, nccl on GPU), or run alone."""
        import torch.distributed as td

        if td.is_available() and td.is_initialized():
            return cls(td.get_rank(), td.get_world_size())
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        td.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        atexit.register(_close_process_group)
        return cls(td.get_rank(), td.get_world_size())

    def all_reduce_grads(self, params: list[nn.Parameter]) -> None:
        """Average the gradients of `params` that have one over the ranks (one flat all-reduce).
        Every rank trains the same path, so every rank has grads for the same parameters."""
        if self.world == 1:
            return
        import torch.distributed as td

        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        td.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def global_mean(self, mean: torch.Tensor, count: int | torch.Tensor) -> torch.Tensor:
        """Rescale a rank-local mean over `count` items so that averaging gradients over the ranks
        gives the mean over all ranks' items (exact when ranks hold different counts)."""
        if self.world == 1:
            return mean
        import torch.distributed as td

        total = torch.tensor(float(count), device=mean.device)
        td.all_reduce(total)
        return mean * (float(count) * self.world / max(total.item(), 1.0))

    def main_first(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on rank 0 first (e.g. building a cache entry), then on the others (reading it)."""
        if self.main:
            result = fn()
        self.barrier()
        if not self.main:
            result = fn()
        return result

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as td

            td.barrier()

    def broadcast_object(self, obj):
        if self.world == 1:
            return obj
        import torch.distributed as td

        box = [obj]
        td.broadcast_object_list(box, src=0)
        return box[0]


# --------------------------------------------------------------------------------------------------
# Independent jobs side by side (CPU)
# --------------------------------------------------------------------------------------------------

_JOBS: list[Callable[[Callable[[str], None]], Any]] = []
"""The jobs of the `run_jobs` call in progress (a forked worker finds its job here by index)."""
_MESSAGES: list[Any] = []
"""[the queue] a forked worker's `say` puts its lines on, for the parent to say."""


def _run_job(i: int, threads: int) -> Any:
    torch.set_num_threads(threads)
    return _JOBS[i](_MESSAGES[0].put)


def run_jobs(jobs: list[Callable[[Callable[[str], None]], Any]], workers: int = 1,
             say: Callable[[str], None] = print) -> list[Any]:
    """Run independent `jobs`, each `job(say) -> something picklable`; their results, in order.

    With `workers` > 1, that many run at once in forked processes (copy-on-write: what the parent
    prepared, e.g. teacher logits, is not copied), the CPU threads split between them; what a job says
    comes back through a queue and is said here. A training step of a model with a few million
    parameters is too small to keep 2 cores busy, so two of them at 1 thread each finish sooner than
    one after the other at 2 (`elasticlm bench --only workers`). One worker, a GPU, or a distributed
    run: the jobs run here, in order. Numbers differ from a run with another thread count only by
    float summation order. A job's error is raised here once the others have finished."""
    workers = min(max(1, workers), len(jobs))
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    if workers == 1 or distributed or torch.cuda.is_initialized():
        return [job(say) for job in jobs]
    import multiprocessing as mp
    import queue
    import sys
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("fork")
    threads = max(1, torch.get_num_threads() // workers)
    _JOBS[:], _MESSAGES[:] = jobs, [ctx.Queue()]
    sys.stdout.flush(), sys.stderr.flush()  # or the workers print the parent's pending output again

    def drain(wait: float) -> None:
        while True:
            try:
                say(_MESSAGES[0].get(timeout=wait))
            except queue.Empty:
                return

    try:
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = [pool.submit(_run_job, i, threads) for i in range(len(jobs))]
            while not all(f.done() for f in futures):
                drain(0.2)
            drain(0.5)  # lines still in the pipe when the last job returned
            return [f.result() for f in futures]
    finally:
        _JOBS.clear(), _MESSAGES.clear()
