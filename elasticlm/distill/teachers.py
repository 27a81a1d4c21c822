"""Teachers: one forward interface for encoder and causal teachers (fetching and caching them is
`elasticlm.distill.fetch`).

`load_teacher` takes what `fetch.ensure_teacher` accepts (an offline alias, a local folder, a hub id)
and returns a `Teacher`: called on a batch it runs the frozen model (eval mode, no grad,
bf16 autocast by default) and returns a `TeacherOutput` with the hidden states of every layer, the
attention probabilities of every layer (eager attention, so they are real probabilities) and the
logits of whatever head the model has (MLM, causal LM, or a fine-tuned task head).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from elasticlm.distill.fetch import ensure_teacher, load_tokenizer, quiet_transformers
from elasticlm.errors import ElasticLMError

__all__ = ["Teacher", "TeacherOutput", "check_vocab", "load_teacher", "teacher_layer"]


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
