"""A run folder's files: metrics.jsonl + TensorBoard, and atomic `checkpoints/step-N/` with `LAST`.

    MetricsLog                one JSON line per logged step, the same scalars as TensorBoard events
    save_checkpoint           weights (one safetensors file per module; tied tensors saved once, their
                              other names recorded as aliases), optimizer, scheduler, state.json
    find_checkpoint           the newest complete checkpoint (LAST first); corrupt ones are refused
    load_checkpoint_weights   load each module's weights (aliases filled in, so ties hold), return state.json
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from elasticlm.errors import ElasticLMError
from elasticlm.io import atomic_dir, atomic_file


# --------------------------------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------------------------------


class MetricsLog:
    """metrics.jsonl plus TensorBoard scalars. On resume, lines past the resumed step are dropped."""

    def __init__(self, out: Path, *, resume_step: int = 0, enabled: bool = True, name: str = "metrics.jsonl"):
        self.enabled = enabled
        self.path = Path(out) / name
        self._tb = None
        if not enabled:
            return
        truncate_jsonl(self.path, resume_step)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(Path(out) / "tb"), purge_step=resume_step + 1 if resume_step else None)
        except ImportError:  # tensorboard is optional at run time; metrics.jsonl always works
            self._tb = None

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def truncate_jsonl(path: Path, step: int) -> None:
    """Keep only the lines of a JSONL log whose "step" is <= `step` (what a resumed run redoes)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    with atomic_file(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in keep))


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def save_checkpoint(out: Path, step: int, modules: dict[str, nn.Module], optimizer, scheduler,
                    state: dict[str, Any], keep: int = 2) -> Path:
    """Write `checkpoints/step-N/` atomically, then point `checkpoints/LAST` at it."""
    from safetensors.torch import save_file

    root = Path(out) / "checkpoints"
    final = root / f"step-{step}"
    if final.exists():
        shutil.rmtree(final)
    with atomic_dir(final) as tmp:
        for name, module in modules.items():
            tensors, aliases = _dedupe_shared(module.state_dict())
            save_file(tensors, str(tmp / f"{name}.safetensors"), metadata={"aliases": json.dumps(aliases)})
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=2) + "\n")  # last
    with atomic_file(root / "LAST") as tmp:
        tmp.write_text(final.name + "\n")
    done = sorted((p for p in root.glob("step-*") if p.is_dir() and p.name[5:].isdigit()),
                  key=lambda p: int(p.name[5:]))
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _checkpoint_ok(folder: Path, names: list[str]) -> str | None:
    """None when `folder` holds a complete checkpoint, else why not."""
    from safetensors import safe_open

    if not (folder / "state.json").is_file():
        return "no state.json (incomplete)"
    try:
        json.loads((folder / "state.json").read_text())
        for name in names:
            with safe_open(str(folder / f"{name}.safetensors"), "pt") as f:
                list(f.keys())
        for name in ("optimizer.pt", "scheduler.pt"):
            if not (folder / name).is_file() or (folder / name).stat().st_size == 0:
                return f"{name} missing"
    except Exception as err:  # noqa: BLE001 - any unreadable file means a corrupt checkpoint
        return f"unreadable ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    return None


def find_checkpoint(out: Path, names: list[str], say: Callable[[str], None] | None = None) -> Path | None:
    """The newest complete checkpoint under `out/checkpoints` (LAST first, then newer-to-older);
    a corrupt or partial one is reported and skipped."""
    root = Path(out) / "checkpoints"
    if not root.is_dir():
        return None
    candidates = sorted((p for p in root.glob("step-*") if p.is_dir() and p.name[5:].isdigit()),
                        key=lambda p: -int(p.name[5:]))
    last = root / "LAST"
    if last.is_file():
        named = root / last.read_text().strip()
        candidates = [named] + [c for c in candidates if c != named]
    for folder in candidates:
        why = _checkpoint_ok(folder, names)
        if why is None:
            return folder
        if say:
            say(f"checkpoint {folder} is refused: {why}; trying the previous one")
    return None


def load_checkpoint_weights(folder: Path, modules: dict[str, nn.Module]) -> dict[str, Any]:
    """Load each module's weights (a supernet widens grown FFNs itself); returns state.json."""
    for name, module in modules.items():
        module.load_state_dict(_with_aliases(folder / f"{name}.safetensors", module))
    return json.loads((folder / "state.json").read_text())


def _dedupe_shared(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A state dict safetensors accepts, and {alias: kept name}. A tensor that is exactly another
    one (tied weights: same storage, offset, shape and stride) is saved once under its first name;
    a tensor that only overlaps another one's storage is saved as a copy."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    exact: dict[tuple, str] = {}
    storages: set[tuple] = set()
    for key, value in state.items():
        v = value.detach()
        where = (v.device, v.untyped_storage().data_ptr()) if v.numel() else None
        ident = _identity(v)
        if where is not None and ident in exact:
            aliases[key] = exact[ident]
            continue
        if where is not None and where in storages or not v.is_contiguous():
            v = v.clone(memory_format=torch.contiguous_format)  # a view into shared storage: its own copy
        elif where is not None:
            storages.add(where)
            exact[ident] = key
        tensors[key] = v
    return tensors, aliases


def _identity(v: torch.Tensor) -> tuple:
    """What makes two tensors the same tensor: storage, offset, shape, stride and dtype."""
    return (v.device, v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), v.stride(), v.dtype)


def _with_aliases(path: Path, module: nn.Module) -> dict[str, torch.Tensor]:
    """A checkpoint file's tensors with its aliases filled in (the kept tensor under both names), so
    a module with tied weights loads strictly and its ties hold: both names copy into the one shared
    parameter. Names the file lacks that the module ties to a saved name are filled the same way
    (checkpoints written without the alias record)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
    state = load_file(str(path))
    for alias, kept in aliases.items():
        state[alias] = state[kept]
    own = {}
    for key, value in module.state_dict(keep_vars=True).items():
        if value.numel():
            own.setdefault(_identity(value), []).append(key)
    for keys in own.values():
        saved = next((k for k in keys if k in state), None)
        for k in keys:
            if saved is not None and k not in state:
                state[k] = state[saved]
    return state
