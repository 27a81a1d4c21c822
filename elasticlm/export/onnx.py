"""ONNX export of a standalone elasticlm model, its parity check, and dynamic int8 quantisation.

`export_onnx` traces the model with dynamic batch and sequence axes, using torch's TorchScript-based
exporter (deprecated but kept: it needs no onnxscript and traces these models in well under a
second) and eager attention, so the graph is plain matmuls and softmax. `max_abs_diff` runs the ONNX file in onnxruntime
and compares with the PyTorch model as a user runs it (fp32, eval mode) on a padded batch, over the
real tokens of token-level outputs. `quantize_int8` writes onnxruntime's dynamic quantisation of the
weights (QInt8), and `time_session` measures a session on fixed batches for the speed-up.
`sample_batch` tokenizes the inputs every check runs on (`SAMPLE_TEXTS` when the source names no task).
"""

from __future__ import annotations

import copy
import inspect
import logging
import statistics
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

OPSET = 17
"""ONNX opset of the exported graph."""
TOLERANCE = 1e-4
"""Largest allowed |ONNX - PyTorch| over the outputs (fp32)."""
SAMPLE_TEXTS = (
    "a gripping, beautifully acted drama that stays with you long after the credits roll .",
    "the plot is thin and the jokes fall flat .",
    "an uneven but often charming film .",
    "I would not watch it again .",
    "what a waste of a talented cast !",
    "the city council met on tuesday to discuss the new budget for public schools and roads .",
    "she smiled .",
    "the movie is neither as funny nor as clever as it thinks it is , but it has its moments .",
    "a quiet triumph .",
    "dull , overlong and strangely lifeless , the sequel never finds a reason to exist .",
    "where is the nearest train station ?",
    "the capital of france is paris , and the capital of italy is rome .",
    "surprisingly moving , with a final act that earns every tear .",
    "bad .",
    "the story was good but the acting was poor and the ending made no sense at all .",
    "prices rose sharply in the third quarter as demand outpaced supply across the region .",
)
"""Text for the checks when the source names no task (parity, int8 agreement and speed)."""


class _Outputs(nn.Module):
    """Positional tensors in, the named output tensors out (what the ONNX graph computes)."""

    def __init__(self, model: nn.Module, input_names: Sequence[str], output_names: Sequence[str]):
        super().__init__()
        self.model = model
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        params = inspect.signature(model.forward).parameters
        self.extra = {"use_cache": False} if "use_cache" in params else {}

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(**dict(zip(self.input_names, inputs)), return_dict=True, **self.extra)
        return tuple(getattr(out, name) for name in self.output_names)


def torch_outputs(model: nn.Module, batch: dict[str, np.ndarray], output_names: Sequence[str]) -> list[np.ndarray]:
    """The PyTorch model's named outputs for a numpy batch (no grad, the model's own mode)."""
    wrapper = _Outputs(model, list(batch), output_names)
    with torch.no_grad():
        outs = wrapper(*(torch.from_numpy(v) for v in batch.values()))
    return [o.float().numpy() for o in outs]


def export_onnx(model: nn.Module, path: str | Path, example: dict[str, np.ndarray], output_names: Sequence[str],
                *, token_level: bool) -> None:
    """Write `model` (a copy with eager attention, eval mode, fp32) to `path`. The inputs are the keys
    of `example` (int64 B×N arrays) with dynamic axes 0 ("batch") and 1 ("sequence"); the outputs
    have a dynamic batch axis, and a dynamic sequence axis too when `token_level` (B×N×...)."""
    traced = copy.deepcopy(model).float().eval()
    if hasattr(traced.config, "attention_backend"):
        traced.config.attention_backend = "eager"
    names = list(example)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in names}
    for name in output_names:
        dynamic[name] = {0: "batch", 1: "sequence"} if token_level else {0: "batch"}
    with warnings.catch_warnings():  # shape guards (e.g. "sequence longer than the positions") trace as constants
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: see the module docstring
        torch.onnx.export(_Outputs(traced, names, output_names), tuple(torch.from_numpy(example[n]) for n in names),
                          str(path), dynamo=False, opset_version=OPSET, input_names=names,
                          output_names=list(output_names), dynamic_axes=dynamic, do_constant_folding=True)


def sample_batch(tokenizer, texts, *, max_length: int) -> dict[str, np.ndarray]:
    """Tokenized, padded int64 arrays of the inputs the model takes (input_ids, attention_mask,
    and token_type_ids when the tokenizer makes them)."""
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np")
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    return {k: np.asarray(enc[k], dtype=np.int64) for k in keys}


def session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session for `path` (`threads`: intra-op threads, None = onnxruntime's choice)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_session(sess, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run `sess` on the inputs it takes from `batch` (the exporter drops inputs the graph ignores)."""
    wanted = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in batch.items() if k in wanted})


def real_positions(output: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The values at real tokens of a token-level output (B×N×... -> R×...); others unchanged."""
    if output.ndim >= 2 and output.shape[:2] == mask.shape:
        return output[mask.astype(bool)]
    return output


def max_abs_diff(sess, model: nn.Module, batch: dict[str, np.ndarray], output_names: Sequence[str]) -> float:
    """Largest |onnxruntime - PyTorch| over every output (real tokens of token-level outputs)."""
    mask = batch["attention_mask"]
    got = run_session(sess, batch)
    want = torch_outputs(model, batch, output_names)
    return max(float(np.abs(real_positions(g, mask) - real_positions(w, mask)).max()) for g, w in zip(got, want))


def quantize_int8(src: str | Path, dst: str | Path) -> None:
    """onnxruntime's dynamic quantisation: int8 weights, activations quantised on the fly."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process (symbolic shape inference) does not apply here
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


def time_session(sess, batches: Sequence[dict[str, np.ndarray]], *, repeats: int = 3) -> float:
    """Milliseconds for one pass over `batches` (the median of `repeats` passes after a warm-up)."""
    run_session(sess, batches[0])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            run_session(sess, batch)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
