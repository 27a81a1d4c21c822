"""Candidate scoring for search: the task metric on the held-out split with inherited supernet weights.

`SupernetFitness` is the `fitness(list[Architecture]) -> list[float]` the strategies take. The held-out
split is tokenized once and padded once into length buckets on the device (`Batches`); each candidate
is one bare inference pass over it (no captures, SDPA attention, bf16 where faster), through the
supernet's own task head. QA (SQuAD): the held-out questions are windowed once, and a candidate's
fitness is the F1 of its best span per question (`Batches.metrics`). Distributed: the candidates of
a batch are dealt round-robin to the ranks and the scores gathered, so every rank returns the same list.
"""

from __future__ import annotations

import time

import torch

from elasticlm.space import Architecture
from elasticlm.train.evaluation import Batches, path_metrics


class SupernetFitness:
    """Scores architectures on `batches` with `net`'s head for `task` (the task's main metric)."""

    def __init__(self, net, task: str, spec, batches: Batches, *, bf16: bool, dist=None):
        if task not in net.task_heads:
            raise KeyError(task)
        self.net, self.task, self.spec, self.batches, self.bf16, self.dist = net, task, spec, batches, bf16, dist
        self.seconds = 0.0
        """Wall time spent scoring (forward passes + metric)."""
        self.scored = 0

    def metrics(self, arch: Architecture) -> dict[str, float]:
        return path_metrics(self.net, arch, self.task, self.batches, self.spec, bf16=self.bf16)

    def __call__(self, archs: list[Architecture]) -> list[float]:
        t0 = time.perf_counter()
        dist = self.dist
        if dist is None or dist.world == 1:
            out = [self.metrics(a)[self.spec.main_metric] for a in archs]
        else:
            mine = {i: self.metrics(a)[self.spec.main_metric] for i, a in enumerate(archs) if i % dist.world == dist.rank}
            gathered = [None] * dist.world
            torch.distributed.all_gather_object(gathered, mine)
            merged = {i: v for part in gathered for i, v in part.items()}
            out = [merged[i] for i in range(len(archs))]
        self.seconds += time.perf_counter() - t0
        self.scored += len(archs)
        return out
