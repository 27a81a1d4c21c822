"""The project's speed benchmarks as library code, and the registry `elasticlm bench` runs.

    core           model speed: a supernet path vs the extracted model, inference vs `BertModel`
    train          supernet-training speed: KD step vs the standalone student, MFU, dynamic vs fixed widths
    latency_error  the search's latency predictor (`search.latency`) against measured standalone models
    search         search wall time vs the bare forward passes of its candidates
    generate       causal generation: tokens/s vs `LlamaForCausalLM`, cached vs uncached
    workers        retraining several small models side by side (`retrain.workers`) vs one after the other
    models         `--run`: a run's found model vs `BertModel` of its budget and the uniform baselines
    runner         runs the registered benchmarks and checks each ratio against its target

A benchmark is a function `fn(*, quick: bool = False, [say=print,] **options) -> dict | list[dict]`; each
dict is one measured ratio: {"name", "ratio", "target", "ok", optional "cmp" ("<=" (default), "<",
">="), and any further numbers}. Its keyword options are what `elasticlm bench NAME.key=value` sets.
Adding a benchmark is one `Benchmark` entry in `BENCHMARKS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from elasticlm.errors import ElasticLMError


@dataclass(frozen=True)
class Benchmark:
    """One registered benchmark."""

    name: str
    """Short name: `--only NAME`, `NAME.key=value` options, the key in the JSON output."""
    function: str
    """"package.module:function" that runs it (imported only when it runs)."""
    about: str
    """One line: what it measures against what."""

    def load(self):
        import importlib

        module, _, attr = self.function.partition(":")
        return getattr(importlib.import_module(module), attr)


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("train", "elasticlm.bench.train:train_speed",
              "supernet KD step vs the standalone student's (≤ 1.15), MFU (≥ 0.30), dynamic vs fixed widths (< 0.9)"),
    Benchmark("core", "elasticlm.bench.core:core_speed",
              "supernet path fwd+bwd vs the extracted model (≤ 1.10), inference vs BertModel of the same dims (≤ 1.05)"),
    Benchmark("latency", "elasticlm.bench.latency_error:predictor_error",
              "per-block latency table's prediction vs measured standalone models, median relative error (≤ 0.10)"),
    Benchmark("search", "elasticlm.bench.search:search_speed",
              "search wall time vs the bare forward passes of its distinct candidates (≤ 1.2)"),
    Benchmark("workers", "elasticlm.bench.workers:workers_speed",
              "4 small models retrained by 2 forked workers vs one after the other, wall time (≤ 0.85)"),
    Benchmark("generate", "elasticlm.bench.generate:generate_speed",
              "cached generation tokens/s vs LlamaForCausalLM of the same shape (≥ 0.9), cached vs uncached (≥ 3)"),
)


def get_benchmark(name: str) -> Benchmark:
    for b in BENCHMARKS:
        if b.name == name:
            return b
    raise ElasticLMError(f"unknown benchmark {name!r}; known: {', '.join(b.name for b in BENCHMARKS)}")
