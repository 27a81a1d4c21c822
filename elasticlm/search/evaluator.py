"""Candidate scoring for search: how good a path with inherited supernet weights is on the held-out split.

`SupernetFitness` (fitness "metric": the task's main metric) and `AgreementFitness` (fitness
"agreement": minus the mean KL(teacher ‖ path) of the class logits, or minus the MSE of a regression's
outputs, against the task teacher's logits, computed once) are the `fitness(list[Architecture]) ->
list[float]` the strategies take. The metric moves in steps of one example; agreement is continuous,
so it can tell apart paths whose predicted labels agree. The held-out
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
from elasticlm.train.evaluation import Batches, path_metrics, path_predictions


class SupernetFitness:
    """Scores architectures on `batches` with `net`'s head for `task` (the task's main metric)."""

    name = "metric"

    def __init__(self, net, task: str, spec, batches: Batches, *, bf16: bool, dist=None):
        if task not in net.task_heads:
            raise KeyError(task)
        self.net, self.task, self.spec, self.batches, self.bf16, self.dist = net, task, spec, batches, bf16, dist
        self.seconds = 0.0
        """Wall time spent scoring (forward passes + metric)."""
        self.scored = 0

    def metrics(self, arch: Architecture) -> dict[str, float]:
        return path_metrics(self.net, arch, self.task, self.batches, self.spec, bf16=self.bf16)

    def score(self, arch: Architecture) -> float:
        """One architecture's fitness (higher is better)."""
        return self.metrics(arch)[self.spec.main_metric]

    def __call__(self, archs: list[Architecture]) -> list[float]:
        t0 = time.perf_counter()
        dist = self.dist
        if dist is None or dist.world == 1:
            out = [self.score(a) for a in archs]
        else:
            mine = {i: self.score(a) for i, a in enumerate(archs) if i % dist.world == dist.rank}
            gathered = [None] * dist.world
            torch.distributed.all_gather_object(gathered, mine)
            merged = {i: v for part in gathered for i, v in part.items()}
            out = [merged[i] for i in range(len(archs))]
        self.seconds += time.perf_counter() - t0
        self.scored += len(archs)
        return out


class AgreementFitness(SupernetFitness):
    """Minus the mean disagreement of a path with the teacher over `batches` (rows of any labels):
    KL(teacher ‖ path) of the class logits per row (classification), the squared difference of the
    outputs (regression), as `distill.losses.logit_loss(kind="classic")` at temperature 1."""

    name = "agreement"

    def __init__(self, net, task: str, spec, batches: Batches, teacher_logits, *, bf16: bool, dist=None):
        super().__init__(net, task, spec, batches, bf16=bf16, dist=dist)
        self.teacher_logits = torch.as_tensor(teacher_logits, dtype=torch.float32)
        """The teacher's logits of every row of `batches`, in split order (n×C)."""
        if len(self.teacher_logits) != len(batches.order):
            raise ValueError(f"{len(self.teacher_logits)} teacher rows for {len(batches.order)} rows")

    def score(self, arch: Architecture) -> float:
        from elasticlm.distill.losses import logit_loss

        preds = path_predictions(self.net, arch, self.task, self.batches, bf16=self.bf16)
        return -float(logit_loss(torch.as_tensor(preds, dtype=torch.float32), self.teacher_logits, kind="classic"))
