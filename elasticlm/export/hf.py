"""`export_model`: a trained elasticlm model as a folder that loads anywhere (docs: README, "Export").

The source is a run folder (its found model, `RUN/models/found/`) or any folder saved by
`ElasticLM*.save_pretrained` (config.json with model_type "elasticlm") holding its tokenizer. The
export folder holds:

    config.json, model.safetensors   the weights of the model class alone (no trainer state), fp32,
                                     with `auto_map` pointing the Auto classes at the code below
    modeling_elasticlm.py, elasticlm_*.py   the modeling code, copied at export time (see `source`)
    tokenizer files                  the model's tokenizer
    README.md                        the model card (see `card`)
    model.onnx, model.int8.onnx      with onnx / int8 (see `onnx` and `quality`)
    export.json                      what the export checked and measured

so `AutoModelFor...from_pretrained(DIR, trust_remote_code=True)` and `pipeline(..., model=DIR,
trust_remote_code=True)` work with only torch and transformers installed. The folder is built next
to `out` and renamed into place when every check passed, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import json
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from elasticlm.errors import ElasticLMError

Say = Callable[[str], None]

AUTO_CLASSES = ("AutoModel", "AutoModelForMaskedLM", "AutoModelForSequenceClassification",
                "AutoModelForQuestionAnswering", "AutoModelForCausalLM")
"""Auto classes written into `auto_map` (each that has an elasticlm model class registered)."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                   "tokenizer.model")
"""Files of which a saved tokenizer has at least one."""
RELOAD_TOLERANCE = 1e-5
"""Largest allowed |exported code - library| difference of the outputs at export time."""


@dataclass(frozen=True)
class Head:
    """How one model class is exported."""

    auto_class: str
    """The transformers Auto class that loads it."""
    pipeline_tag: str
    """Its Hub pipeline tag (the model card's metadata)."""
    outputs: tuple[str, ...]
    """The output fields exported to ONNX and compared."""
    token_level: bool
    """Outputs are per token (B×N×...), not per sequence (B×...)."""


HEADS = {
    "ElasticLMForSequenceClassification": Head("AutoModelForSequenceClassification", "text-classification",
                                               ("logits",), False),
    "ElasticLMForMaskedLM": Head("AutoModelForMaskedLM", "fill-mask", ("logits",), True),
    "ElasticLMForCausalLM": Head("AutoModelForCausalLM", "text-generation", ("logits",), True),
    "ElasticLMForQuestionAnswering": Head("AutoModelForQuestionAnswering", "question-answering",
                                          ("start_logits", "end_logits"), True),
    "ElasticLMModel": Head("AutoModel", "feature-extraction", ("last_hidden_state",), True),
}

@dataclass
class Source:
    """What is exported."""

    model_dir: Path
    """The HF model folder."""
    run_dir: Path | None
    """The run folder it came from (metrics, run config), if any."""


def find_model(src: str | Path) -> Source:
    """The model folder of `src` (a run folder or a model folder), or a one-line user error."""
    src = Path(src).expanduser()
    if not src.exists():
        raise ElasticLMError(f"{src}: not found; give a run folder (elasticlm run --out) or a saved model folder")
    if not src.is_dir():
        raise ElasticLMError(f"{src}: is a file; give a run folder or a model folder (config.json + weights)")
    for folder, run in ((src, None), (src / "models" / "found", src)):
        config = folder / "config.json"
        if not config.is_file():
            continue
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
            raise ElasticLMError(f"{config}: not a valid config.json ({err})") from None
        if model_type != "elasticlm":
            raise ElasticLMError(f"{config}: model_type is {model_type!r}, not 'elasticlm'; export elasticlm models only")
        return Source(folder, run)
    raise ElasticLMError(f"{src}: holds no model to export; expected a model folder (config.json with model_type "
                         f"'elasticlm' and its weights) or a run folder with models/found/")


def _load(source: Source):
    """(model in fp32 eval mode, its tokenizer, Head, notes about dropped tensors)."""
    import torch
    from transformers import AutoTokenizer

    from elasticlm.models import HEADS as MODEL_CLASSES
    from elasticlm.models import ElasticLMConfig

    folder = source.model_dir
    config = ElasticLMConfig.from_pretrained(folder)
    name = (config.architectures or ["ElasticLMModel"])[0]
    classes = {cls.__name__: cls for cls in MODEL_CLASSES.values()}
    if name not in classes or name not in HEADS:
        raise ElasticLMError(f"{folder}/config.json: architectures names {name!r}; export supports "
                             f"{', '.join(sorted(HEADS))}")
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise ElasticLMError(f"{folder}: no tokenizer beside the model (none of {', '.join(TOKENIZER_FILES)}); "
                             f"save it there with tokenizer.save_pretrained")
    try:
        model, info = classes[name].from_pretrained(folder, dtype=torch.float32, output_loading_info=True)
    except OSError as err:
        raise ElasticLMError(f"{folder}: cannot load the model weights ({str(err).splitlines()[0]})") from None
    if info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        raise ElasticLMError(f"{folder}: the weights lack {len(missing)} tensor(s) of {name} (e.g. {missing[0]}); "
                             f"the weights do not match config.json")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, TypeError) as err:
        raise ElasticLMError(f"{folder}: no usable tokenizer beside the model ({str(err).splitlines()[0][:120]}); "
                             f"save it there with tokenizer.save_pretrained") from None
    dropped = sorted(info.get("unexpected_keys") or [])
    return model.eval(), tokenizer, HEADS[name], dropped


def _auto_map(model_cls_names: dict[str, str]) -> dict[str, str]:
    """auto_map for config.json: each Auto class -> `modeling_elasticlm.<Class>`."""
    import transformers

    from elasticlm.export.source import flat_name
    from elasticlm.models import ElasticLMConfig

    out = {"AutoConfig": f"{flat_name(ElasticLMConfig.__module__)}.{ElasticLMConfig.__name__}"}
    for auto in AUTO_CLASSES:
        try:
            cls = getattr(transformers, auto)._model_mapping[ElasticLMConfig]
        except KeyError:
            continue
        out[auto] = f"{flat_name(cls.__module__)}.{cls.__name__}"
        model_cls_names[auto] = cls.__name__
    return out


def _import_exported(folder: Path, class_name: str):
    """Import the exported code as a throwaway package; returns (class, cleanup callable)."""
    from elasticlm.export.source import MAIN_FILE

    pkg = f"_elasticlm_export_check_{uuid.uuid4().hex}"
    spec = importlib.machinery.ModuleSpec(pkg, None, is_package=True)
    module = importlib.util.module_from_spec(spec)
    module.__path__ = [str(folder)]
    sys.modules[pkg] = module

    def cleanup():
        for name in [m for m in sys.modules if m == pkg or m.startswith(pkg + ".")]:
            del sys.modules[name]

    try:
        return getattr(importlib.import_module(f"{pkg}.{MAIN_FILE}"), class_name), cleanup
    except BaseException:
        cleanup()
        raise


def _reload_diff(folder: Path, class_name: str, model, batch, head: Head) -> float:
    """Max |exported code's outputs - the library model's| for `batch` (the export's own files)."""
    from elasticlm.export.onnx import real_positions, torch_outputs

    cls, cleanup = _import_exported(folder, class_name)
    try:
        reloaded = cls.from_pretrained(folder).eval()
        got = torch_outputs(reloaded, batch, head.outputs)
    finally:
        cleanup()
    want = torch_outputs(model, batch, head.outputs)
    mask = batch["attention_mask"]
    return max(float(np.abs(real_positions(g, mask) - real_positions(w, mask)).max()) for g, w in zip(got, want))


def _check_out(out: Path, source: Source, force: bool) -> None:
    model_dir = source.model_dir.resolve()
    if out.resolve() == model_dir or out.resolve() in model_dir.parents:
        raise ElasticLMError(f"{out}: is (or holds) the model being exported; choose another --out")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ElasticLMError(f"{out}: exists and is not empty; choose another --out or pass --force to replace it")


def export_model(src: str | Path, out: str | Path, *, onnx: bool = False, int8: bool = False, force: bool = False,
                 say: Say = print) -> dict[str, Any]:
    """Export the model of `src` (run folder or model folder) into `out`; returns export.json's contents.

    `onnx` adds model.onnx (checked against PyTorch: max |difference| <= 1e-4, else RuntimeError);
    `int8` adds model.int8.onnx (implies `onnx`) with its accuracy change and speed-up. `force`
    replaces a non-empty `out`."""
    from elasticlm.export.card import model_card
    from elasticlm.export.onnx import SAMPLE_TEXTS, sample_batch
    from elasticlm.export.quality import int8_report
    from elasticlm.export.source import copy_modeling_code

    started = time.perf_counter()
    source = find_model(src)
    out = Path(out).expanduser()
    _check_out(out, source, force)
    onnx = onnx or int8
    model, tokenizer, head, dropped = _load(source)
    if dropped:
        say(f"left out {len(dropped)} tensor(s) that are not part of the model (e.g. {dropped[0]})")
    max_length = min(64, int(model.config.max_position_embeddings))
    batch = sample_batch(tokenizer, SAMPLE_TEXTS[:8], max_length=max_length)
    class_name = type(model).__name__
    result: dict[str, Any] = {
        "source": str(source.model_dir), "run": str(source.run_dir) if source.run_dir else None,
        "class": class_name, "auto_class": head.auto_class, "pipeline_tag": head.pipeline_tag,
        "params": {"total": int(model.num_parameters()),
                   "non_embedding": int(model.num_parameters(exclude_embeddings=True))},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        auto_names: dict[str, str] = {}
        model.config.auto_map = _auto_map(auto_names)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        copied = copy_modeling_code(tmp)
        result["code_files"] = sorted(copied.files)
        result["auto_map"] = model.config.auto_map
        diff = _reload_diff(tmp, class_name, model, batch, head)
        if not diff <= RELOAD_TOLERANCE:
            raise RuntimeError(f"the exported code's outputs differ from the library model's by {diff:.3g} "
                               f"(> {RELOAD_TOLERANCE:g})")
        result["reload_max_abs_diff"] = diff
        say(f"HF folder: {class_name} ({result['params']['total']:,} parameters), code {', '.join(result['code_files'])}; "
            f"reloaded from its own code: max |diff| {diff:.2g}")
        if onnx:
            result["onnx"] = _onnx(tmp, model, head, batch, say)
        if int8:
            result["int8"] = int8_report(tmp, model, tokenizer, head, source, say=say)
        result["seconds"] = round(time.perf_counter() - started, 1)
        (tmp / "README.md").write_text(model_card(model, head, source, result, auto_names), encoding="utf-8")
        (tmp / "export.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"exported to {out}")
    return result


def _onnx(folder: Path, model, head: Head, batch: dict[str, np.ndarray], say: Say) -> dict[str, Any]:
    """Write model.onnx and check it against PyTorch on a padded batch."""
    from elasticlm.export.onnx import OPSET, TOLERANCE, export_onnx, max_abs_diff, session

    path = folder / "model.onnx"
    example = {k: v[:2, : max(2, int(batch["attention_mask"][:2].sum(1).min()))] for k, v in batch.items()}
    export_onnx(model, path, example, head.outputs, token_level=head.token_level)
    sess = session(path)
    diff = max_abs_diff(sess, model, batch, head.outputs)
    shape = "×".join(map(str, batch["input_ids"].shape))
    if not diff <= TOLERANCE:
        raise RuntimeError(f"ONNX parity failed: onnxruntime differs from PyTorch by {diff:.3g} "
                           f"(> {TOLERANCE:g}) on a padded {shape} batch")
    say(f"ONNX: {path.name} ({path.stat().st_size / 1e6:.1f} MB), max |onnxruntime - PyTorch| {diff:.2g} "
        f"on a padded {shape} batch (tolerance {TOLERANCE:g})")
    return {"file": path.name, "opset": OPSET, "inputs": [i.name for i in sess.get_inputs()],
            "outputs": list(head.outputs), "max_abs_diff": diff, "tolerance": TOLERANCE, "checked_on": shape,
            "size_mb": round(path.stat().st_size / 1e6, 2)}
