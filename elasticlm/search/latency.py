"""Latency on the machine at hand: honest timing, and a per-block table that predicts a subnet's latency.

    measure_latency(fn, inputs)        median milliseconds of fn(inputs) under inference_mode
    model_latency(model, batch=1)      the same for any HF encoder on random token ids (B×N)
    LatencyTable.load_or_build(space)  every distinct block (kind, sharing, ffn_dim, heads) timed once at
                                       batch 1, N=128, plus the embeddings and the classification head;
                                       cached per machine under <cache>/latency/
    table.predict(arch)                the sum of the architecture's entries (ms)

A block's latency does not depend on its layer (every layer sees a B×N×d input), so a table of
distinct blocks covers every architecture of the space, and the sum predicts the whole model (HAT
predicts latency the same way). Each entry is timed with the modules the standalone model is made of
(`elasticlm.models.blocks.make_block`, `ElasticLMModel`), called exactly as the model calls them:
eval mode, SDPA attention, the model's additive padding mask. The "embeddings" entry is an
`ElasticLMModel` with its blocks removed, so it also carries the forward's fixed overhead (mask,
output object); the "head" entry is the sequence-classification head (mean pooling, pooler, tanh,
classifier). `elasticlm bench` reports how far the prediction is from the measured model
(`elasticlm.bench.latency_error`).

The cache key is the machine (CPU model, torch version, threads, device name), the space's
dimensions, the dtype, batch and sequence length: any change measures a new table.
"""

from __future__ import annotations

import contextlib
import gc
import json
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from elasticlm.errors import ElasticLMError
from elasticlm.space import Architecture, LayerChoice, SearchSpace

FORMAT = 1
"""Version of the table's contents; bumped whenever what an entry measures changes."""


# ----- timing -------------------------------------------------------------------------------------
def _on_cuda(inputs) -> bool:
    values = inputs.values() if isinstance(inputs, Mapping) else inputs if isinstance(inputs, (list, tuple)) else [inputs]
    return any(isinstance(v, torch.Tensor) and v.is_cuda for v in values)


CLOCKS = ("wall", "cpu")
"""wall: elapsed time (the latency a user sees); cpu: CPU time of this process, all threads (what the
call costs on a core of its own: a busy shared machine's waits for a core are not counted)."""


def measure_latency(model_fn: Callable, inputs=None, *, warmup: int = 5, repeats: int = 30,
                    clock: str = "wall") -> float:
    """Median wall milliseconds of one call of `model_fn` on `inputs` (a dict: keyword arguments, a
    tuple/list: positional ones, None: no arguments, anything else: the one argument).

    Runs under `torch.inference_mode`, with the garbage collector paused; on CUDA every call is
    bracketed by `torch.cuda.synchronize()` so queued kernels are counted. `warmup` calls first
    (allocator, kernel selection), then the median of `repeats` timed calls, which a few calls
    slowed by other processes do not move. clock="cpu" times CPU seconds instead (see `CLOCKS`): on a
    machine whose cores other processes keep busy, a call longer than the scheduler's time slice is
    preempted almost every time, so wall medians of long calls grow while short calls escape.
    """
    if clock not in CLOCKS:
        raise ElasticLMError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    now = time.perf_counter if clock == "wall" else time.process_time
    if repeats < 1 or warmup < 0:
        raise ElasticLMError(f"measure_latency: repeats must be ≥ 1 and warmup ≥ 0, got {repeats} and {warmup}")
    if inputs is None:
        call = model_fn
    elif isinstance(inputs, Mapping):
        call = lambda: model_fn(**inputs)  # noqa: E731
    elif isinstance(inputs, (list, tuple)):
        call = lambda: model_fn(*inputs)  # noqa: E731
    else:
        call = lambda: model_fn(inputs)  # noqa: E731
    cuda = torch.cuda.is_available() and (_on_cuda(inputs) if inputs is not None else torch.cuda.is_initialized())
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times = []
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                call()
            sync()
            for _ in range(repeats):
                t = now()
                call()
                sync()
                times.append(now() - t)
    finally:
        if was_enabled:
            gc.enable()
    return statistics.median(times) * 1000.0


@contextlib.contextmanager
def num_threads(n: int | None):
    """Run the `with` body with torch using `n` intra-op threads (None: leave as is); restored after. On a
    machine shared with other busy processes, one thread times far more steadily: a multi-threaded op
    waits for its slowest thread, and a descheduled one can stretch a 1 ms call a hundredfold."""
    before = torch.get_num_threads()
    if n is not None:
        if n < 1:
            raise ElasticLMError(f"threads must be ≥ 1, got {n}")
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    found = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(found, torch.dtype) or not found.is_floating_point:
        raise ElasticLMError(f"dtype {dtype!r} is not a floating-point torch dtype (float32, bfloat16, float16)")
    return found


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def model_latency(model: torch.nn.Module, *, batch: int = 1, seq_len: int = 128, device: str | None = None,
                  dtype: str | torch.dtype | None = None, warmup: int = 5, repeats: int = 30, seed: int = 0,
                  clock: str = "wall") -> float:
    """Median milliseconds of `model(input_ids=..., attention_mask=...)` on random token ids, B×N =
    batch×seq_len, no padding, for any HF encoder (elasticlm models, `BertModel`, ...).

    The model is put in eval mode for the measurement (its mode is restored after) and moved to
    `device` (default: where it is) and `dtype` (default: as it is); it stays there."""
    cfg = getattr(model, "config", None)
    vocab = getattr(cfg, "vocab_size", None)
    if not vocab:
        raise ElasticLMError("model_latency needs a model with a config.vocab_size (a transformers model)")
    limit = getattr(cfg, "max_position_embeddings", None)
    if limit is not None and seq_len > limit:
        raise ElasticLMError(f"seq_len {seq_len} exceeds the model's max_position_embeddings {limit}; "
                             f"measure at seq_len ≤ {limit}")
    if device is not None:
        model.to(device)
    if dtype is not None:
        model.to(_dtype(dtype))
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (batch, seq_len), generator=g).to(dev)  # B×N
    mask = torch.ones(batch, seq_len, dtype=torch.long, device=dev)  # B×N
    was_training = model.training
    model.eval()
    try:
        return measure_latency(model, {"input_ids": ids, "attention_mask": mask}, warmup=warmup, repeats=repeats,
                               clock=clock)
    finally:
        model.train(was_training)


# ----- the per-block table ------------------------------------------------------------------------
def machine_fingerprint(device: str = "cpu") -> dict:
    """What makes timings of one machine comparable: CPU model, torch version, threads, device name."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type
    return {"cpu": cpu, "torch": torch.__version__, "threads": torch.get_num_threads(), "device": name}


def space_dims(space: SearchSpace) -> dict:
    """The dimensions of `space` that decide what a block or the embeddings cost (not L or the budget)."""
    return {"hidden_size": space.hidden_size, "num_heads": space.num_heads, "embedding_size": space.embedding_size,
            "vocab_size": space.vocab_size, "max_position_embeddings": space.max_position_embeddings,
            "type_vocab_size": space.type_vocab_size, "mobile_ffns": space.mobile_ffns,
            "kinds": list(space.kinds), "sharings": list(space.sharings)}


def block_key(layer: LayerChoice) -> str:
    """A table entry's name: "kind/sharing/ffn_dim/heads", e.g. "mobile/qv/96/4"."""
    return f"{layer.kind}/{layer.sharing}/{layer.ffn_dim}/{layer.heads}"


def table_key(space: SearchSpace, *, device: str = "cpu", batch: int = 1, seq_len: int = 128,
              dtype: str | torch.dtype = torch.float32, ffn_dims: Iterable[int] | None = None,
              clock: str = "wall") -> str:
    """The cache key of a table: machine fingerprint + space dimensions + dtype, batch, N, widths, clock."""
    from elasticlm.data.cache import cache_key

    return cache_key({"format": FORMAT, "machine": machine_fingerprint(device), "space": space_dims(space),
                      "dtype": _dtype_name(_dtype(dtype)), "batch": batch, "seq_len": seq_len,
                      "ffn_dims": sorted(ffn_dims) if ffn_dims is not None else None,
                      **({"clock": clock} if clock != "wall" else {})})


@dataclass
class LatencyTable:
    """Measured milliseconds of every distinct block of a space, the embeddings and the head."""

    key: str
    """Cache key (`table_key`): machine, space dimensions, dtype, batch, N, widths."""
    machine: dict
    """`machine_fingerprint` of the machine that measured it."""
    space: dict
    """`space_dims` of the space it was measured for."""
    device: str
    """Where the modules ran ("cpu", "cuda")."""
    dtype: str
    """Weight and activation dtype ("float32", "bfloat16", ...)."""
    batch: int
    """B of the measured input."""
    seq_len: int
    """N of the measured input."""
    clock: str = "wall"
    """What was timed: "wall" or "cpu" (see `CLOCKS`)."""
    entries: dict[str, float] = field(default_factory=dict)
    """Milliseconds: "embeddings", "head" and one "kind/sharing/ffn_dim/heads" per distinct block."""
    seconds: float = 0.0
    """Wall time the measurement took."""

    # ----- prediction ---------------------------------------------------------------------------
    def block_ms(self, layer: LayerChoice) -> float:
        try:
            return self.entries[block_key(layer)]
        except KeyError:
            raise ElasticLMError(f"the latency table has no entry for block {block_key(layer)}; build it with "
                                 f"ffn_dims covering {layer.ffn_dim} (or ffn_dims=None: the whole grid)") from None

    def predict(self, arch: Architecture, *, head: bool = True) -> float:
        """Predicted milliseconds of the model of `arch`: embeddings + its blocks (+ the classification
        head unless head=False, i.e. `ElasticLMModel` rather than `ElasticLMForSequenceClassification`)."""
        total = self.entries["embeddings"] + sum(self.block_ms(layer) for layer in arch.layers)
        return total + (self.entries["head"] if head else 0.0)

    # ----- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "key": self.key, "machine": self.machine, "space": self.space,
                "device": self.device, "dtype": self.dtype, "batch": self.batch, "seq_len": self.seq_len,
                "clock": self.clock, "seconds": self.seconds, "entries": dict(self.entries)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "LatencyTable":
        data = dict(data)
        if data.pop("format", None) != FORMAT:
            raise ElasticLMError("latency table of another format; rebuild it (delete it or pass rebuild=True)")
        return cls(**data)

    # ----- measuring ----------------------------------------------------------------------------
    @classmethod
    def build(cls, space: SearchSpace, *, device: str = "cpu", batch: int = 1, seq_len: int = 128,
              dtype: str | torch.dtype = torch.float32, ffn_dims: Iterable[int] | None = None,
              warmup: int = 5, repeats: int = 30, clock: str = "wall",
              say: Callable[[str], None] | None = None) -> "LatencyTable":
        """Time every distinct block (each kind × sharing of the space, each width in `ffn_dims`
        (default: the whole growth grid), each valid head count), the embeddings and the head."""
        from torch import nn

        from elasticlm.models.blocks import additive_mask, init_weights, make_block
        from elasticlm.models.modeling import ElasticLMConfig, ElasticLMModel, pool

        if seq_len > space.max_position_embeddings:
            raise ElasticLMError(f"seq_len {seq_len} exceeds the space's max_position_embeddings "
                                 f"{space.max_position_embeddings}")
        widths = sorted(set(ffn_dims)) if ffn_dims is not None else list(space.ffn_grid)
        bad = [f for f in widths if f not in space.ffn_grid]
        if bad:
            raise ElasticLMError(f"ffn_dims {bad} are off the growth grid {list(space.ffn_grid)}")
        dt, dev = _dtype(dtype), torch.device(device)
        t0 = time.perf_counter()
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(1, space.vocab_size, (batch, seq_len), generator=g).to(dev)  # B×N
        attention_mask = torch.ones(batch, seq_len, dtype=torch.long, device=dev)  # B×N
        entries: dict[str, float] = {}

        # the embeddings and the forward's fixed cost: the standalone model with no blocks
        one = Architecture((LayerChoice("bert", "none", space.ffn_step, 1),) * space.num_layers)
        base = ElasticLMModel(ElasticLMConfig.from_space(space, one)).to(dev, dt).eval()
        base.layers = nn.ModuleList()
        entries["embeddings"] = measure_latency(base, {"input_ids": ids, "attention_mask": attention_mask},
                                                warmup=warmup, repeats=repeats, clock=clock)
        with torch.inference_mode():
            x = base(input_ids=ids, attention_mask=attention_mask).last_hidden_state  # B×N×d
        mask = additive_mask(attention_mask, seq_len, causal=False, dtype=x.dtype, device=dev)  # B×1×1×N

        # the sequence-classification head as ElasticLMForSequenceClassification runs it
        d = space.hidden_size
        pooler, classifier = nn.Linear(d, d).to(dev, dt), nn.Linear(d, 2).to(dev, dt)
        entries["head"] = measure_latency(
            lambda h: classifier(torch.tanh(pooler(pool(h, attention_mask, "mean")))), x,
            warmup=warmup, repeats=repeats, clock=clock)

        blocks = [LayerChoice(kind, sharing, f, h) for kind, sharing in space.candidates for f in widths
                  for h in space.valid_heads(kind)]
        for i, layer in enumerate(blocks):
            block = make_block(layer.kind, layer.sharing, layer.ffn_dim, layer.heads, hidden_size=d,
                               inner_size=space.inner_size, n_ffn=space.mobile_ffns)
            block.apply(lambda m: init_weights(m, 0.02))
            block = block.to(dev, dt).eval()
            entries[block_key(layer)] = measure_latency(lambda b=block: b(x, mask, eager=False), None,
                                                        warmup=warmup, repeats=repeats, clock=clock)
            if say and (i + 1) % 50 == 0:
                say(f"latency table: {i + 1}/{len(blocks)} blocks")
        return cls(key=table_key(space, device=device, batch=batch, seq_len=seq_len, dtype=dt, ffn_dims=ffn_dims,
                                 clock=clock),
                   machine=machine_fingerprint(device), space=space_dims(space), device=str(dev),
                   dtype=_dtype_name(dt), batch=batch, seq_len=seq_len, clock=clock, entries=entries,
                   seconds=round(time.perf_counter() - t0, 3))

    @staticmethod
    def path_for(key: str) -> Path:
        from elasticlm.data.cache import cache_root

        return cache_root() / "latency" / f"{key}.json"

    @classmethod
    def load_or_build(cls, space: SearchSpace, *, device: str = "cpu", batch: int = 1, seq_len: int = 128,
                      dtype: str | torch.dtype = torch.float32, ffn_dims: Iterable[int] | None = None,
                      rebuild: bool = False, warmup: int = 5, repeats: int = 30, clock: str = "wall",
                      say: Callable[[str], None] | None = None) -> "LatencyTable":
        """The cached table of this machine and space, measured (and written) when there is none
        or `rebuild` is set."""
        from elasticlm.io import atomic_file

        ffn_dims = list(ffn_dims) if ffn_dims is not None else None
        key = table_key(space, device=device, batch=batch, seq_len=seq_len, dtype=dtype, ffn_dims=ffn_dims, clock=clock)
        path = cls.path_for(key)
        if path.exists() and not rebuild:
            try:
                return cls.from_dict(json.loads(path.read_text()))
            except (ValueError, TypeError, KeyError):
                pass  # unreadable or of another format: measure again
        if say:
            say(f"measuring the latency table (batch {batch}, N={seq_len}, {_dtype_name(_dtype(dtype))} on {device})")
        table = cls.build(space, device=device, batch=batch, seq_len=seq_len, dtype=dtype, ffn_dims=ffn_dims,
                          warmup=warmup, repeats=repeats, clock=clock, say=say)
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(table.to_dict(), indent=1) + "\n")
        return table
