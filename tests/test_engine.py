"""The training engine's parts: deterministic per-step data, sharding, checkpoints, logs, configs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from elasticlm.config import from_dict, override, to_dict
from elasticlm.data.batching import pad_batch, rows_of
from elasticlm.errors import ElasticLMError
from elasticlm.runtime import Dist, resolve_bf16, resolve_device
from elasticlm.train.engine import TrainConfig, fit, itstime, step_rows
from elasticlm.train.run_folder import find_checkpoint, load_checkpoint_weights, save_checkpoint, truncate_jsonl


def test_step_rows_cover_each_epoch_and_shard_like_one_process():
    cfg = TrainConfig(batch_size=8, seed=3)
    n = 20
    one = [step_rows(n, cfg, s, 0, Dist()) for s in range(5)]  # 40 rows = 2 epochs
    flat = [i for rows in one for i in rows]
    assert sorted(flat[:20]) == list(range(20)) and sorted(flat[20:]) == list(range(20))
    assert flat[:20] != list(range(20))  # shuffled
    two = [[step_rows(n, cfg, s, 0, Dist(r, 2)) for r in range(2)] for s in range(5)]
    assert [a + b for a, b in two] == one
    acc = TrainConfig(batch_size=8, grad_accum=2, seed=3)
    assert [step_rows(n, acc, s, 0, Dist()) + step_rows(n, acc, s, 1, Dist()) for s in range(5)] == one
    assert step_rows(n, cfg, 2, 0, Dist()) == one[2]  # a step's rows do not depend on history
    with pytest.raises(ElasticLMError, match="multiple of grad_accum"):
        step_rows(n, TrainConfig(batch_size=6, grad_accum=4), 0, 0, Dist())


def test_step_rows_grouped_by_length_cover_each_epoch_with_batches_of_like_length():
    import random

    n, B = 1000, 8
    rng = random.Random(1)
    lengths = tuple(rng.randint(3, 60) for _ in range(n))
    cfg = TrainConfig(batch_size=B, seed=3, group_by_length=True)
    steps = [step_rows(n, cfg, s, 0, Dist(), lengths=lengths) for s in range(n // B)]
    assert sorted(i for rows in steps for i in rows) == list(range(n))  # one epoch, each row once
    spread = lambda batches: sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)  # noqa: E731
    plain = [step_rows(n, TrainConfig(batch_size=B, seed=3), s, 0, Dist()) for s in range(n // B)]
    assert spread(steps) < 0.2 * spread(plain)  # far less padding
    assert steps != sorted(steps, key=lambda b: -lengths[b[0]])  # batch order still shuffled
    two = [[step_rows(n, cfg, s, 0, Dist(r, 2), lengths=lengths) for r in range(2)] for s in range(5)]
    assert [a + b for a, b in two] == steps[:5]  # sharded like one process, and deterministic
    assert step_rows(n, cfg, 7, 0, Dist(), lengths=None) == plain[7]  # no lengths: the plain order


def test_pad_batch_trims_to_the_longest_real_row():
    rows = [{"input_ids": [2, 5, 6, 3, 0, 0], "attention_mask": [1, 1, 1, 1, 0, 0], "labels": 1},
            {"input_ids": [2, 7, 3], "attention_mask": [1, 1, 1], "labels": 0}]
    b = pad_batch(rows, pad_id=0, multiple=1)
    assert b["input_ids"].tolist() == [[2, 5, 6, 3], [2, 7, 3, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]] and b["labels"].tolist() == [1, 0]


def test_rows_of_a_dataset_equal_its_torch_format_rows():
    """The columnar fast path gives the rows (and padded batches) the torch-formatted dataset gives:
    same values, int64 / float32 dtypes, formatted columns only, selections and re-formatting honoured."""
    import datasets

    g = torch.Generator().manual_seed(0)
    lens = torch.randint(1, 12, (40,), generator=g).tolist()
    data = {"input_ids": [torch.randint(5, 99, (k,), generator=g).tolist() for k in lens],
            "attention_mask": [[1] * k for k in lens], "token_type_ids": [[0] * k for k in lens],
            "labels": torch.rand(40, generator=g).tolist(), "text": [str(k) for k in lens]}
    cols = ["input_ids", "attention_mask", "token_type_ids", "labels"]
    ds = datasets.Dataset.from_dict(data).with_format("torch", columns=cols).select(list(range(39, 0, -2)))
    idx = [3, 0, 7, 7, 19]
    got = rows_of(ds, idx)
    want = [ds[i] for i in idx]
    assert [sorted(r) for r in got] == [sorted(cols)] * len(idx)
    for a, b in zip(got, want):
        for k in cols:
            torch.testing.assert_close(torch.as_tensor(a[k]), b[k])
    pa_, pb = pad_batch(got, 0), pad_batch(want, 0)
    assert pa_.keys() == pb.keys() and pa_["labels"].dtype == torch.float32
    for k in pb:
        torch.testing.assert_close(pa_[k], pb[k])
    ds.set_format("torch", columns=["input_ids", "attention_mask"])  # in place: the cache follows
    assert sorted(rows_of(ds, [0])[0]) == ["attention_mask", "input_ids"]


def test_itstime():
    assert [s for s in range(1, 11) if itstime(s, 4)] == [4, 8]
    assert [s for s in range(1, 11) if itstime(s, 4, 10, last=True)] == [4, 8, 10]
    assert not any(itstime(s, None) for s in range(1, 5))



def test_train_config_resolves_device_and_precision_through_the_runtime():
    for device in ("auto", "cpu"):
        assert TrainConfig(device=device).torch_device() == resolve_device(device)
    for precision in ("auto", "bf16", "fp32"):
        assert TrainConfig(precision=precision).bf16 == resolve_bf16(precision)
    assert resolve_bf16("bf16") and not resolve_bf16("fp32")


class Line:
    """A toy objective: fit y = 3x - 1 on 64 points."""

    def __init__(self, cfg: TrainConfig):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.model = nn.Linear(1, 1)
        self.modules = {"model": self.model}
        self.x = torch.linspace(-1, 1, 64)[:, None]
        self.cfg = cfg

    def batch(self, step, micro):
        rows = step_rows(64, self.cfg, step, micro, Dist())
        return {"x": self.x[rows], "attention_mask": torch.ones(len(rows), 1)}

    def losses(self, batch, step):
        loss = ((self.model(batch["x"]).float() - (3 * batch["x"] - 1)) ** 2).mean()
        return {"loss": loss, "mse": loss}


def test_fit_learns_logs_checkpoints_and_resumes(tmp_path):
    cfg = TrainConfig(lr=0.5, batch_size=16, max_steps=40, warmup_ratio=0.0, precision="fp32", progress=False,
                      checkpoint_every=10, log_every=5, keep_checkpoints=2)
    a = Line(cfg)
    state = fit(a, cfg, tmp_path / "a", total=40, say=lambda s: None)
    assert state["step"] == 40 and state["losses"]["mse"] < 0.05
    lines = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(5, 41, 5)) and lines[-1]["lr"] == 0.0
    ckpts = sorted(p.name for p in (tmp_path / "a" / "checkpoints").glob("step-*"))
    assert ckpts == ["step-30", "step-40"]  # keep_checkpoints=2
    # resume from step 20 of a run that was stopped there: same final weights
    b = Line(cfg)
    short = TrainConfig(**{**cfg.__dict__, "max_steps": 40})
    fit(b, short, tmp_path / "b", total=40, say=lambda s: None)
    c = Line(cfg)
    for p in (tmp_path / "b" / "checkpoints").glob("step-40"):
        import shutil

        shutil.rmtree(p)
    (tmp_path / "b" / "checkpoints" / "LAST").write_text("step-40\n")  # points at a missing folder
    said = []
    fit(c, cfg, tmp_path / "b", total=40, say=said.append)
    assert any("resuming from" in s and "step-30" in s for s in said)
    torch.testing.assert_close(c.model.weight, a.model.weight, atol=1e-6, rtol=0)
    lines = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(5, 41, 5))  # no duplicated lines after resume


class Calibrated(Line):
    """`Line` with a value fixed on its first batch that its checkpoints keep (`state` / `restore`)."""

    def __init__(self, cfg: TrainConfig):
        super().__init__(cfg)
        self.scale, self.restored = None, None

    def losses(self, batch, step):
        if self.scale is None:
            self.scale = float(batch["x"].abs().mean()) + step  # differs on any other first batch
        return super().losses(batch, step)

    def state(self):
        return {"scale": self.scale}

    def restore(self, saved):
        self.scale = self.restored = saved["scale"]


def test_an_objectives_own_state_is_checkpointed_and_restored(tmp_path):
    cfg = TrainConfig(lr=0.1, batch_size=16, max_steps=6, precision="fp32", progress=False, checkpoint_every=3)
    a = Calibrated(cfg)
    fit(a, cfg, tmp_path, total=6, say=lambda s: None)
    assert json.loads((tmp_path / "checkpoints" / "step-6" / "state.json").read_text())["scale"] == a.scale
    import shutil

    shutil.rmtree(tmp_path / "checkpoints" / "step-6")
    (tmp_path / "checkpoints" / "LAST").write_text("step-3\n")
    b = Calibrated(cfg)
    fit(b, cfg, tmp_path, total=6, say=lambda s: None)  # resumes at step 3: keeps the first batch's value
    assert b.restored == b.scale == a.scale


def test_checkpoint_round_trip_and_refusal(tmp_path):
    model = nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path, 7, {"m": model}, opt, sched, {"hello": 1})
    other = nn.Linear(3, 2)
    folder = find_checkpoint(tmp_path, ["m"])
    state = load_checkpoint_weights(folder, {"m": other})
    assert state == {"hello": 1, "step": 7}
    torch.testing.assert_close(other.weight, model.weight)
    (folder / "state.json").unlink()  # partial: refused
    said = []
    assert find_checkpoint(tmp_path, ["m"], said.append) is None and "incomplete" in said[0]


def test_truncate_jsonl(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in (2, 4, 6, 8)))
    truncate_jsonl(path, 5)
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [2, 4]


@dataclass
class Inner:
    lr: float = 1e-4
    """lr"""
    steps: int | None = None
    """steps"""


@dataclass
class Outer:
    name: str = "x"
    """name"""
    tasks: list[str] = field(default_factory=lambda: ["a"])
    """tasks"""
    inner: Inner = field(default_factory=Inner)
    """inner"""


def test_config_tree_round_trip_overrides_and_errors():
    cfg = Outer()
    assert from_dict(Outer, to_dict(cfg)) == cfg
    cfg2 = override(cfg, ["inner.lr=3e-4", "inner.steps=5", "tasks=[b, c]"])
    assert cfg2.inner.lr == 3e-4 and cfg2.inner.steps == 5 and cfg2.tasks == ["b", "c"]
    with pytest.raises(ElasticLMError, match="unknown config key inner.lrr"):
        override(cfg, ["inner.lrr=1"])
    with pytest.raises(ElasticLMError, match="inner.lr: expected a number"):
        from_dict(Outer, {"inner": {"lr": "fast"}})
    with pytest.raises(ElasticLMError, match="unknown config key bogus"):
        from_dict(Outer, {"bogus": 1})
    with pytest.raises(ElasticLMError, match="inner.steps: expected an integer"):
        override(cfg, ["inner.steps=1.5"])


def _job(i: int, say):
    say(f"job {i}")
    if i == 3:
        raise ElasticLMError("job 3 failed")
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3) * i
    return {"i": i, "sum": float(x.sum()), "threads": torch.get_num_threads()}


def test_run_jobs_side_by_side_equal_one_after_the_other():
    from elasticlm.runtime import run_jobs

    jobs = [lambda say, i=i: _job(i, say) for i in (0, 1, 2, 4, 5)]
    said_here, said_forked = [], []
    here = run_jobs(jobs, 1, said_here.append)
    forked = run_jobs(jobs, 2, said_forked.append)
    assert [r["i"] for r in forked] == [0, 1, 2, 4, 5]  # in order
    assert [r["sum"] for r in forked] == [r["sum"] for r in here]
    assert all(r["threads"] == max(1, torch.get_num_threads() // 2) for r in forked)
    assert sorted(said_forked) == sorted(said_here) == [f"job {i}" for i in (0, 1, 2, 4, 5)]  # nothing lost
    with pytest.raises(ElasticLMError, match="job 3 failed"):  # a worker's error reaches the caller
        run_jobs([lambda say: _job(0, say), lambda say: _job(3, say)], 2, said_forked.append)


def test_total_steps_follow_epochs_with_a_floor_and_a_cap():
    from elasticlm.train.engine import TrainConfig

    t = TrainConfig(batch_size=32, epochs=2.0)
    assert t.total_steps(100) == 7 and t.total_steps([100, 64]) == 7 + 4  # ceil(2·100/32), per task summed
    floor = TrainConfig(batch_size=32, epochs=2.0, min_steps=20)
    assert floor.total_steps(100) == 20 and floor.total_steps(1000) == 63  # a small set gets more passes
    assert TrainConfig(batch_size=32, epochs=2.0, min_steps=20, max_steps=5).total_steps(100) == 5
    with pytest.raises(ElasticLMError, match="min_steps=0 must be > 0"):
        TrainConfig(min_steps=0).validate()
