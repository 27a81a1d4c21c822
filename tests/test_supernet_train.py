"""Supernet training end to end on tiny sizes (fp32, a random tiny BERT teacher, a generated corpus):
files and growth, resume after SIGKILL equals an uninterrupted run, a NaN stops cleanly, two gloo
processes equal one, fine-tuning with heads that survive extraction, and bad input."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from elasticlm.errors import ElasticLMError
from elasticlm.kinds import KINDS
from elasticlm.models.folder import load_supernet
from elasticlm.train.engine import TrainConfig
from elasticlm.train.supernet import FinetuneConfig, GrowthConfig, PathRange, PretrainConfig

from conftest import STAGE_VOCAB as VOCAB

@pytest.fixture(scope="module")
def corpus(word_corpus) -> Path:
    return word_corpus


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ELASTICLM_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


SPACE = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "embedding_size": 16, "vocab_size": len(VOCAB),
         "max_position_embeddings": 32, "param_ceiling": None}


def pre_cfg(teacher: Path, corpus: Path, **train) -> PretrainConfig:
    t = dict(lr=2e-3, batch_size=8, max_steps=12, checkpoint_every=3, precision="fp32", progress=False, log_every=2,
             keep_checkpoints=5)
    t.update(train)
    return PretrainConfig(preset="demo", space=dict(SPACE), corpus=str(corpus), teacher=str(teacher),
                          max_length=16, train=TrainConfig(**t), growth=GrowthConfig(every=4, probe_blocks=8, k=3))


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "supernet.safetensors"))


@pytest.fixture(scope="module")
def pretrained(teacher_dir, corpus, tmp_path_factory) -> Path:
    from elasticlm.train.supernet_stages import pretrain

    out = tmp_path_factory.mktemp("runs") / "pre"
    os.environ["ELASTICLM_CACHE"] = str(tmp_path_factory.getbasetemp() / "cache")
    pretrain(pre_cfg(teacher_dir, corpus), out, say=lambda s: None)
    return out


def test_pretrain_writes_its_folder_and_grows(pretrained, teacher_dir, corpus):
    from elasticlm.train.supernet_stages import pretrain

    for name in ("supernet.safetensors", "config.json", "growth.jsonl", "metrics.jsonl", "result.json",
                 "checkpoints/LAST"):
        assert (pretrained / name).exists(), name
    assert list((pretrained / "tb").iterdir())
    rounds = [json.loads(line) for line in (pretrained / "growth.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rounds] == [4, 8, 12]
    first = rounds[0]
    grown = [b for b in first["blocks"] if b["after"] > b["before"]]
    assert len(grown) == 3 and all(b["after"] == b["before"] + 8 for b in grown)
    top = sorted(first["blocks"], key=lambda b: -b["score"])[:3]  # the top K by score were grown
    assert {tuple(b["block"]) for b in top} == {tuple(b["block"]) for b in grown}
    config = json.loads((pretrained / "config.json").read_text())
    net, _ = load_supernet(pretrained, KINDS)
    assert max(config["widths"].values()) > 8 and net.mean_ffn_width() == config["mean_ffn_width"]
    lines = [json.loads(line) for line in (pretrained / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "mlm", "attn", "hidden", "lr", "tokens_per_s"} <= set(lines[-1])
    # a finished folder is not trained again
    again = pretrain(pre_cfg(teacher_dir, corpus), pretrained, say=lambda s: None)
    assert again == json.loads((pretrained / "result.json").read_text())


def test_derived_growth_takes_the_mean_ffn_width_to_d(teacher_dir, corpus, tmp_path):
    """growth.every / growth.k unset: rounds and K follow from the 10 steps (4 blocks: 6 rounds of 2 by
    step 8), the mean width reaches d = 32 and the last round leaves the final 20% of the steps to settle."""
    from elasticlm.train.supernet_stages import pretrain

    cfg = pre_cfg(teacher_dir, corpus, max_steps=10, checkpoint_every=None, log_every=5)
    cfg.space["sharings"] = ["none"]
    cfg.growth = GrowthConfig(probe_blocks=8)
    result = pretrain(cfg, tmp_path / "grow", say=lambda s: None)
    rounds = [json.loads(line) for line in (tmp_path / "grow" / "growth.jsonl").read_text().splitlines()]
    grew = [r for r in rounds if r.get("grown")]
    assert grew[-1]["mean_width"] >= 32 and grew[-1]["step"] <= 8 and len(grew) >= 2
    assert result["mean_ffn_width"] >= 32 and result["growth_rounds"] == len(grew)


KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import elasticlm.train.engine as engine
from test_supernet_train import pre_cfg
from pathlib import Path
real = engine.save_checkpoint
def save_then_die(out, step, *a, **k):
    folder = real(out, step, *a, **k)
    if step == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)
    return folder
engine.save_checkpoint = save_then_die
from elasticlm.train.supernet_stages import pretrain
pretrain(pre_cfg(Path({teacher!r}), Path({corpus!r})), Path({out!r}), say=lambda s: None)
"""


@pytest.mark.parametrize("kill_at", [3, 6])  # before / after the first growth round (step 4)
def test_killed_run_resumes_to_the_same_weights(pretrained, teacher_dir, corpus, tmp_path, kill_at):
    from elasticlm.train.supernet_stages import pretrain

    out = tmp_path / "killed"
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), kill_at=kill_at, teacher=str(teacher_dir),
                                corpus=str(corpus), out=str(out))
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # the resumed half runs here: same threads
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (out / "checkpoints" / f"step-{kill_at}").is_dir() and not (out / "result.json").exists()
    pretrain(pre_cfg(teacher_dir, corpus), out, say=lambda s: None)
    a, b = weights(pretrained), weights(out)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=0)
    assert (out / "growth.jsonl").read_text() .count("\n") == 3  # rounds redone after the kill are not duplicated


def test_corrupt_checkpoint_is_refused_and_the_previous_used(teacher_dir, corpus, tmp_path, pretrained):
    import elasticlm.train.engine as engine
    from elasticlm.train.supernet_stages import pretrain

    out = tmp_path / "corrupt"
    cfg = pre_cfg(teacher_dir, corpus)
    real = engine.save_checkpoint

    def stop_at_6(o, step, *a, **k):
        folder = real(o, step, *a, **k)
        if step == 6:
            raise KeyboardInterrupt
        return folder

    engine.save_checkpoint = stop_at_6
    try:
        with pytest.raises(KeyboardInterrupt):
            pretrain(cfg, out, say=lambda s: None)
    finally:
        engine.save_checkpoint = real
    (out / "checkpoints" / "step-6" / "supernet.safetensors").write_bytes(b"garbage")  # corrupt the newest
    said = []
    pretrain(cfg, out, say=said.append)
    assert any("step-6 is refused" in s for s in said) and any("resuming from" in s and "step-3" in s for s in said)
    a, b = weights(pretrained), weights(out)
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=0)


def test_nan_loss_stops_with_one_line_and_keeps_the_checkpoint(teacher_dir, corpus, tmp_path, monkeypatch):
    from elasticlm.train import objectives as sn
    from elasticlm.train.supernet_stages import pretrain

    real = sn.MLMDistill.losses

    def poisoned(self, batch, step):
        out = real(self, batch, step)
        if step >= 4:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(sn.MLMDistill, "losses", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(ElasticLMError, match="loss is nan at step 5.*step-3 is kept") as err:
        pretrain(pre_cfg(teacher_dir, corpus), out, say=lambda s: None)
    assert "\n" not in str(err.value)
    assert (out / "checkpoints" / "LAST").read_text().strip() == "step-3"
    assert not (out / "supernet.safetensors").exists()


DIST_SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
import torch
from safetensors.torch import save_file
import elasticlm.train.supernet_stages as stages
from test_supernet_train import pre_cfg
from pathlib import Path
real = stages.fit
def fit_and_dump(objective, *a, **k):
    state = real(objective, *a, **k)
    net = objective.modules["supernet"]
    save_file({{k: v.contiguous() for k, v in net.state_dict().items()}},
              str(Path({out!r}) / f"rank{{state['dist'].rank}}.safetensors"))
    return state
stages.fit = fit_and_dump
stages.pretrain(pre_cfg(Path({teacher!r}), Path({corpus!r}), lr=5e-4), Path({out!r}), say=lambda s: None)
"""


def test_two_gloo_processes_equal_one(teacher_dir, corpus, tmp_path):
    from elasticlm.train.supernet_stages import pretrain

    # a gentler lr than the other tests: Adam turns the rounding differences of a split batch into
    # updates of ~lr on parameters whose true gradient is ~0, and 1e-5 is the bar here
    pretrain(pre_cfg(teacher_dir, corpus, lr=5e-4), tmp_path / "one", say=lambda s: None)
    out = tmp_path / "ddp"
    script = tmp_path / "ddp.py"
    script.write_text(DIST_SCRIPT.format(tests=str(Path(__file__).parent), teacher=str(teacher_dir),
                                         corpus=str(corpus), out=str(out)))
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(torchrun), "--nproc_per_node=2", "--master_port=29517", str(script)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1, one = (load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors")),
                   weights(tmp_path / "one"))
    assert r0.keys() == one.keys()
    for k in r0:
        torch.testing.assert_close(r0[k], r1[k], atol=0, rtol=0)  # identical on both ranks
        if k.endswith("attention.key.bias") and "_kv." not in k:
            # softmax ignores a key bias: its exact gradient is 0, so what it gets is rounding noise
            # that Adam scales up to ~lr per step (only kv blocks use the key projection as value)
            continue
        torch.testing.assert_close(r0[k], one[k], atol=1e-5, rtol=0)  # equal to one process, across growth


def test_finetune_trains_heads_that_survive_extraction(pretrained, teacher_dir, sentiment, tmp_path):
    from elasticlm.train.supernet_stages import finetune

    cfg = FinetuneConfig(tasks=[str(sentiment)], teacher=str(teacher_dir), teacher_epochs=3.0, eval_paths=2,
                         augment=1, train=TrainConfig(lr=1e-3, batch_size=8, epochs=2.0, precision="fp32",
                                                      progress=False, checkpoint_every=10))
    out = tmp_path / "ft"
    said: list[str] = []
    result = finetune(cfg, pretrained, out, say=said.append)
    copies = next(s for s in said if "augmented copies" in s)  # teacher-labelled copies joined the rows
    n_copies = int(copies.split()[0].replace(",", ""))
    steps = result["steps"]
    assert n_copies > 0 and steps == math.ceil(2.0 * (int(next(s for s in said if s.startswith("task ")).split(
        ": ")[1].split()[0].replace(",", "")) + n_copies) / 8)
    task = next(iter(result["tasks"]))
    summary = result["tasks"][task]["summary"]
    assert set(summary) == {"heldout", "dev"} and 0 <= summary["dev"]["mean"] <= 1
    net, config = load_supernet(out, KINDS)
    assert config["task_heads"] == {task: {"kind": "classification", "num_labels": 2, "pooling": "mean"}}
    arch = net.space.sample(random.Random(0), net.widths())
    ids = torch.randint(5, len(VOCAB), (2, 9))
    with torch.no_grad():
        h = net.eval()(ids, arch).last_hidden_state
        model = net.extract(arch, head="classification", task=task).eval()
        torch.testing.assert_close(model(ids).logits, net.task_logits(task, h), atol=1e-5, rtol=1e-5)
    fresh = type(model)(model.config)  # no distillation projection travels into the standalone model
    assert model.state_dict().keys() == fresh.state_dict().keys()


def test_bad_input_is_one_line_and_overwrites_nothing(pretrained, teacher_dir, corpus, tmp_path):
    from elasticlm.train.supernet_stages import pretrain

    before = (pretrained / "supernet.safetensors").read_bytes()
    with pytest.raises(ElasticLMError, match="another config.*train.lr"):
        pretrain(pre_cfg(teacher_dir, corpus, lr=1e-2), pretrained, say=lambda s: None)
    assert (pretrained / "supernet.safetensors").read_bytes() == before
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n")
    with pytest.raises(ElasticLMError):
        pretrain(pre_cfg(teacher_dir, empty), tmp_path / "e", say=lambda s: None)
    cfg = pre_cfg(teacher_dir, corpus)
    cfg.space["vocab_size"] = 30522
    with pytest.raises(ElasticLMError, match="vocab"):
        pretrain(cfg, tmp_path / "v", say=lambda s: None)
    cfg = pre_cfg(teacher_dir, corpus)
    cfg.paths = PathRange(max_params=1000)
    with pytest.raises(ElasticLMError, match="parameter range"):
        pretrain(cfg, tmp_path / "r", say=lambda s: None)
    from elasticlm.train.supernet_stages import finetune

    with pytest.raises(ElasticLMError, match=r"finetune.augment must be an integer >= 0"):
        finetune(FinetuneConfig(augment=-1), pretrained, tmp_path / "a", say=lambda s: None)
    with pytest.raises(ElasticLMError, match=r"finetune.augment_p must be in \(0, 1\]"):
        finetune(FinetuneConfig(augment=1, augment_p=0.0), pretrained, tmp_path / "a", say=lambda s: None)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("how", ["teacher", "random"])
def test_supernet_embedding_starts_from_the_teacher(teacher_dir, corpus, how):
    """pretrain.embedding_init=teacher: the supernet's token embedding is the teacher's projected onto its
    principal components (std as asked); random: the seeded N(0, 0.02) of a plain build."""
    from dataclasses import replace

    from elasticlm.distill.init import embedding_from_teacher
    from elasticlm.runtime import Dist
    from elasticlm.train.supernet import build_supernet, resolve_space
    from elasticlm.train.supernet_stages import Stage1

    cfg = replace(pre_cfg(teacher_dir, corpus), embedding_init=how, embedding_std=0.07)
    space = resolve_space("demo", SPACE)
    net = Stage1.setup(cfg, Dist(), space=space).net
    ref = build_supernet(space, fixed=False, seed=cfg.train.seed)
    if how == "teacher":
        from elasticlm.distill.teachers import load_teacher
        from elasticlm.kinds import KINDS

        embedding_from_teacher(ref, load_teacher(str(teacher_dir), task_kinds=KINDS.values()).model, std=0.07,
                               seed=cfg.train.seed)
        assert float(net.get_input_embeddings().weight.detach().std()) == pytest.approx(0.07, rel=1e-4)
    torch.testing.assert_close(net.get_input_embeddings().weight, ref.get_input_embeddings().weight)
    rest = lambda n: {k: v for k, v in n.state_dict().items() if "word_embeddings" not in k}  # noqa: E731
    torch.testing.assert_close(rest(net), rest(ref))  # nothing else changes
