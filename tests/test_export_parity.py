"""Exported and compiled graphs keep padding: traced with an unpadded example, an ONNX export run by
onnxruntime and a `torch.compile`d model match eager on padded batches (the mask path never branches
on the mask's values)."""

import random

import pytest
import torch
from conftest import LastHidden

from elasticlm.models import SuperNet, SupernetConfig
from elasticlm.space import SearchSpace

SPACE = SearchSpace(hidden_size=48, num_layers=2, num_heads=12, embedding_size=16, vocab_size=97,
                    max_position_embeddings=64)


@pytest.fixture(scope="module")
def model():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = SuperNet(SupernetConfig(SPACE))
    arch = SPACE.sample(random.Random(1), net.widths())
    return net.extract(arch, attention_backend="eager").eval()


def padded():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, SPACE.vocab_size, (3, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    return ids, mask


def test_onnx_export_traced_unpadded_runs_padded(model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    ids, mask = padded()
    path = tmp_path / "m.onnx"
    torch.onnx.export(LastHidden(model), (ids, torch.ones_like(mask)), str(path), dynamo=False,
                      input_names=["input_ids", "attention_mask"], output_names=["hidden"],
                      dynamic_axes={"input_ids": {0: "b", 1: "n"}, "attention_mask": {0: "b", 1: "n"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert {i.name for i in session.get_inputs()} == {"input_ids", "attention_mask"}  # the mask survived
    got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    with torch.no_grad():
        expected = LastHidden(model)(ids, mask)
    real = mask.bool()
    torch.testing.assert_close(torch.from_numpy(got)[real], expected[real], atol=1e-4, rtol=1e-4)


def test_torch_compile_matches_eager_on_padded_batches(model):
    ids, mask = padded()
    # fullgraph: a Python branch on the mask would break the graph (and sync on every forward)
    compiled = torch.compile(LastHidden(model), backend="eager", dynamic=False, fullgraph=True)
    with torch.no_grad():
        compiled(ids, torch.ones_like(mask))  # first call with an unpadded batch
        got = compiled(ids, mask)
        expected = LastHidden(model)(ids, mask)
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=1e-5)
