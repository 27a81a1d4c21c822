"""The supernet folder format: `supernet.safetensors` (weights at their current FFN widths, task heads
included) and `config.json` (space, widths, task heads, and what the stage that wrote it adds: the
resolved training config). Written atomically, file by file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from elasticlm.errors import ElasticLMError
from elasticlm.io import atomic_file
from elasticlm.models.supernet import SuperNet, SupernetConfig
from elasticlm.space import SearchSpace


def widths_to_json(widths: dict) -> dict[str, int]:
    return {f"{l}/{kind}/{sharing}": w for (l, kind, sharing), w in widths.items()}


def widths_from_json(data: dict[str, int]) -> dict:
    out = {}
    for key, w in data.items():
        l, kind, sharing = key.split("/")
        out[(int(l), kind, sharing)] = int(w)
    return out


def save_supernet(net: SuperNet, out: Path, info: dict[str, Any]) -> None:
    """`supernet.safetensors` + `config.json` (space, widths, task heads, `info`), atomically."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "supernet.safetensors") as tmp:
        save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(tmp))
    config = {"space": net.space.to_dict(), "widths": widths_to_json(net.widths()),
              "mean_ffn_width": net.mean_ffn_width(), "task_heads": net.task_head_specs(), **info}
    with atomic_file(out / "config.json") as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")


def load_supernet(folder: str | Path, task_kinds: dict[str, Any] | None = None) -> tuple[SuperNet, dict[str, Any]]:
    """The supernet saved in `folder` (grown widths and task heads restored) and its config.json.

    `task_kinds` maps a kind name to its `elasticlm.kinds.TaskKind` (pass `elasticlm.kinds.KINDS`); it is
    needed only when the folder holds task heads, which are rebuilt by their kind."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / "supernet.safetensors").is_file() or not (folder / "config.json").is_file():
        raise ElasticLMError(f"{folder} holds no trained supernet (supernet.safetensors + config.json); "
                             f"run `elasticlm supernet pretrain --out {folder}` first")
    config = json.loads((folder / "config.json").read_text())
    space = SearchSpace.from_dict(config["space"])
    net = SuperNet(SupernetConfig(space))
    for task, spec in config.get("task_heads", {}).items():
        if task_kinds is None or spec["kind"] not in task_kinds:
            raise ElasticLMError(f"{folder}: task head {task!r} is of kind {spec['kind']!r}; load it with "
                                 f"task_kinds=elasticlm.kinds.KINDS (known here: {sorted(task_kinds or {})})")
        net.add_task_head(task, task_kinds[spec["kind"]], spec["num_labels"], pooling=spec.get("pooling", "mean"))
    net.load_state_dict(load_file(str(folder / "supernet.safetensors")))
    return net, config
