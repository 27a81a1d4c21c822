"""Run registered benchmarks in one go, check each ratio against its target, collect every number."""

from __future__ import annotations

import inspect
import time
import typing
from collections.abc import Callable, Sequence

from elasticlm.bench import BENCHMARKS, get_benchmark
from elasticlm.errors import ElasticLMError

CMPS: dict[str, Callable[[float, float], bool]] = {"<=": lambda r, t: r <= t, "<": lambda r, t: r < t,
                                                   ">=": lambda r, t: r >= t, ">": lambda r, t: r > t}


def parse_options(assignments: Sequence[str]) -> dict[str, dict]:
    """["train.steps=4", "latency.subnets=3"] -> {"train": {"steps": 4}, "latency": {"subnets": 3}}
    (values parsed as YAML scalars; the benchmark and the option must exist, with the right type)."""
    import yaml

    from elasticlm.config import _check

    out: dict[str, dict] = {}
    for item in assignments:
        key, eq, raw = item.partition("=")
        name, dot, option = key.strip().partition(".")
        if not eq or not dot or not option:
            raise ElasticLMError(f"benchmark option {item!r} must look like NAME.key=value (e.g. latency.subnets=5)")
        fn = get_benchmark(name).load()
        params = {p for p in inspect.signature(fn).parameters if p not in ("quick", "say")}
        if option not in params:
            raise ElasticLMError(f"unknown option {key} of benchmark {name}; known: {', '.join(sorted(params))}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        hint = typing.get_type_hints(fn).get(option, typing.Any)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (hint is str or str in typing.get_args(hint)):
            value = str(raw)
        out.setdefault(name, {})[option] = _check(value, hint, key)
    return out


def normalise(result: dict) -> dict:
    """A benchmark's result dict with "cmp" filled in and "ok" recomputed from ratio, target and cmp."""
    r = dict(result)
    r.setdefault("cmp", "<=")
    r["ratio"] = float(r["ratio"])
    r["ok"] = bool(CMPS[r["cmp"]](r["ratio"], r["target"]))
    return r


def format_result(r: dict) -> str:
    mark = "pass" if r["ok"] else "MISS"
    return f"  {r['name']:48s} {r['ratio']:8.3f}   target {r['cmp']} {r['target']:<6g} {mark}"


def run_benchmarks(names: Sequence[str] | None = None, *, quick: bool = False,
                   options: dict[str, dict] | None = None, say: Callable[[str], None] = print) -> dict:
    """{"benchmarks": {name: {"results": [...], "seconds"} or {"error": message}}, "ratios": [every
    result with its benchmark's name], "missed": int, "errors": int}. A benchmark that fails with a
    user error is recorded and the others still run."""
    options = options or {}
    chosen = [get_benchmark(n) for n in names] if names else list(BENCHMARKS)
    out: dict = {"benchmarks": {}, "ratios": []}
    for bench in chosen:
        say(f"== {bench.name}: {bench.about}")
        t0 = time.perf_counter()
        try:
            fn = bench.load()
            extra = {"say": say} if "say" in inspect.signature(fn).parameters else {}
            raw = fn(quick=quick, **extra, **options.get(bench.name, {}))
        except ElasticLMError as err:
            say(f"  {bench.name}: error: {err}")
            out["benchmarks"][bench.name] = {"error": str(err), "seconds": round(time.perf_counter() - t0, 2)}
            continue
        results = [normalise(r) for r in (raw if isinstance(raw, list) else [raw])]
        out["benchmarks"][bench.name] = {"results": results, "seconds": round(time.perf_counter() - t0, 2)}
        for r in results:
            say(format_result(r))
            out["ratios"].append({"benchmark": bench.name, **{k: r[k] for k in ("name", "ratio", "target", "cmp", "ok")}})
    out["missed"] = sum(not r["ok"] for r in out["ratios"])
    out["errors"] = sum("error" in b for b in out["benchmarks"].values())
    return out
