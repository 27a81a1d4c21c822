"""What can a student of a run's budget take from its teacher? Retrain models made from the task teacher's
own layers with the run's retraining recipe, seeds 0 1 2 (or --seeds), and print mean ± std:

    python scripts/teacher_ceiling.py RUN NAME --mode teacher [--layers 0,1,2,3] [--rank R] [KEY=VALUE ...]
    python scripts/teacher_ceiling.py RUN NAME --mode slice|scratch [--layers 0,1,2,3] [KEY=VALUE ...]
    ... [KEY=VALUE ...] --against RUN/levers/base RUN/ceiling/OTHER   also the paired difference with each

--mode teacher   the task teacher cut to --layers (its own width, embedding and dropout); --rank R first cuts its
                 word embedding to its top-R principal components, what a factorised V×R embedding holds
                 (a 4.5M budget with the teacher's 30.5k-token vocabulary leaves R ≈ 128).
--mode slice     an elasticlm model of the run's space (d, e) with one BERT block per teacher layer, at the
                 teacher's head width (d / head_dim heads) and the widest FFN of the grid, cut from those
                 layers: the d hidden dimensions with the largest activations, the heads and FFN units with
                 the largest weights, the embedding from the teacher's top-e principal components and a
                 least-squares projection, every LayerNorm's gain and bias refitted to the teacher's
                 outputs (`slice_teacher`). Prints how much of each layer's output it keeps (R²).
--mode scratch   the same model with only the token embedding from the teacher (the slice's control).

Models go to RUN/ceiling/NAME/seed-K (resumable: finished seeds are reused). Measured in the README
("What a student of this budget can take from its teacher").
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch


def recipe(run: Path, overrides: list[str]):
    """The run's retraining config (with the task, teacher and corpus the run handed it, as `elasticlm
    compare` reads it) with `overrides` applied."""
    from elasticlm.config import from_dict, override
    from elasticlm.experiment.run import RunConfig

    return override(from_dict(RunConfig, json.loads((run / "run_config.json").read_text())["config"]).retrain,
                    overrides)


@torch.no_grad()
def cut_teacher(teacher, layers: list[int], rank: int = 0):
    """A trainable copy of a BERT-like sequence classifier keeping `layers` (in that order); `rank` > 0
    replaces its word embedding by its projection on the top-`rank` principal components."""
    model = copy.deepcopy(teacher).float()
    base = model.base_model
    base.encoder.layer = torch.nn.ModuleList([base.encoder.layer[i] for i in layers])
    model.config.num_hidden_layers = len(layers)
    if rank:
        w = base.embeddings.word_embeddings.weight  # V×d_t
        mu = w.mean(0, keepdim=True)
        v = _principal_directions(w - mu, rank)
        w.copy_((w - mu) @ v @ v.T + mu)
    for p in model.parameters():
        p.requires_grad_(True)
    object.__setattr__(model, "elasticlm", base)  # retrain_model counts the encoder's parameters
    return model.train()


def _principal_directions(centred: torch.Tensor, k: int) -> torch.Tensor:
    """The top-k right singular vectors of `centred` (n×d), d×k: exact and deterministic."""
    return torch.linalg.svd(centred.double(), full_matrices=False).Vh[:k].T.to(centred.dtype)


def _outputs(module_by_key: dict, run) -> dict:
    """Each module's output (float) during `run()`."""
    got = {}
    hooks = [m.register_forward_hook(lambda m, a, o, k=k: got.__setitem__(k, o.float())) for k, m in module_by_key.items()]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return got


def _inputs(module, run) -> torch.Tensor:
    got = []
    hook = module.register_forward_pre_hook(lambda m, a: got.append(a[0].float()))
    try:
        run()
    finally:
        hook.remove()
    return got[0]


def _top(score: torch.Tensor, k: int) -> torch.Tensor:
    return torch.sort(torch.topk(score, k).indices).values


@torch.no_grad()
def slice_teacher(student, teacher, layers: list[int], batch: dict) -> list[float]:
    """Fill `student` (an ElasticLMForSequenceClassification of BERT blocks, one per teacher layer in
    `layers`, with the teacher's head width) from `teacher` (a BertForSequenceClassification), fitted on
    the token states of `batch` (input_ids / attention_mask / token_type_ids). Returns the R² of the
    student's hidden states against the teacher's on the kept dimensions (embedding output first)."""
    t, s = teacher.base_model, student.elasticlm
    d, e = student.config.hidden_size, student.config.embedding_size
    head_dim = t.config.hidden_size // t.config.num_attention_heads
    feed = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                token_type_ids=batch["token_type_ids"])
    real = batch["attention_mask"].bool()
    was = teacher.training, student.training
    teacher.eval(), student.eval()
    hs = [h[real].float() for h in teacher(**feed, output_hidden_states=True).hidden_states]
    dims = _top(torch.stack([h.pow(2).mean(0) for h in hs]).mean(0), d)  # the d loudest of d_t
    # embeddings: tokens, positions and segments on the word embedding's top-e principal directions
    emb, te = s.embeddings, t.embeddings
    w = te.word_embeddings.weight.float()
    mu = w.mean(0, keepdim=True)
    basis = _principal_directions(w - mu, e)  # d_t×e
    n_pos = emb.position_embeddings.weight.shape[0]
    emb.word_embeddings.weight.copy_((w - mu) @ basis)
    emb.position_embeddings.weight.copy_((te.position_embeddings.weight[:n_pos].float() + mu) @ basis)
    emb.token_type_embeddings.weight.copy_(te.token_type_embeddings.weight.float() @ basis)
    emb.norm.weight.fill_(1.0), emb.norm.bias.zero_()
    x = _outputs({0: emb.norm}, lambda: student(**feed))[0][real]  # tokens×e
    x1 = torch.cat([x, torch.ones(len(x), 1)], 1)
    sol = torch.linalg.lstsq(x1, hs[0][:, dims]).solution  # (e+1)×d
    emb.project.weight.copy_(sol[:e].T), emb.project.bias.copy_(sol[e])
    t_norms = {}
    for l, (blk, i) in enumerate(zip(s.layers, layers)):
        tl = t.encoder.layer[i]
        if blk.kind != "bert" or d // blk.heads != head_dim:
            raise ValueError(f"layer {l}: slicing needs a bert block with {head_dim}-wide heads")
        sa, wo = tl.attention.self, tl.attention.output.dense.weight.float()
        score = torch.stack([wo[:, h * head_dim:(h + 1) * head_dim].norm() * sa.value.weight[h * head_dim:(h + 1) * head_dim].norm()
                             for h in range(t.config.num_attention_heads)])
        cols = torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in _top(score, blk.heads).tolist()])
        a = blk.attention
        for name in ("query", "key", "value"):
            if getattr(a, name) is not None:
                getattr(a, name).weight.copy_(getattr(sa, name).weight[cols][:, dims])
                getattr(a, name).bias.copy_(getattr(sa, name).bias[cols])
        a.out.weight.copy_(wo[dims][:, cols]), a.out.bias.copy_(tl.attention.output.dense.bias[dims])
        w_in, w_out = tl.intermediate.dense.weight.float(), tl.output.dense.weight.float()
        units = _top(w_in[:, dims].norm(dim=1) * w_out[dims].norm(dim=0), blk.ffn_dim)
        blk.ffn.fc_in.weight.copy_(w_in[units][:, dims]), blk.ffn.fc_in.bias.copy_(tl.intermediate.dense.bias[units])
        blk.ffn.fc_out.weight.copy_(w_out[dims][:, units]), blk.ffn.fc_out.bias.copy_(tl.output.dense.bias[dims])
        t_norms[(l, "attn")], t_norms[(l, "ffn")] = tl.attention.output.LayerNorm, tl.output.LayerNorm
    # LayerNorms: over d of d_t dimensions they normalise differently; refit gain and bias per dimension,
    # layer by layer, so each output matches the teacher's on the kept dimensions (least squares)
    t_out = _outputs(t_norms, lambda: teacher(**feed))
    for l, blk in enumerate(s.layers):
        for which, norm in (("attn", blk.attn_norm), ("ffn", blk.ffn_norm)):
            z = _inputs(norm, lambda: student(**feed))[real]  # tokens×d
            n = (z - z.mean(-1, keepdim=True)) / torch.sqrt(z.var(-1, unbiased=False, keepdim=True) + norm.eps)
            y = t_out[(l, which)][real][:, dims]
            nc, yc = n - n.mean(0), y - y.mean(0)
            gain = (nc * yc).sum(0) / (nc ** 2).sum(0).clamp(min=1e-6)
            norm.weight.copy_(gain), norm.bias.copy_(y.mean(0) - gain * n.mean(0))
    if student.config.classifier_pooling == "cls" and getattr(t, "pooler", None) is not None:
        student.pooler.weight.copy_(t.pooler.dense.weight[dims][:, dims]), student.pooler.bias.copy_(t.pooler.dense.bias[dims])
        student.classifier.weight.copy_(teacher.classifier.weight[:, dims]), student.classifier.bias.copy_(teacher.classifier.bias)
    out = student(**feed, output_hidden_states=True).hidden_states
    r2 = []
    for l, h in enumerate(out):
        y = hs[0 if l == 0 else layers[l - 1] + 1][:, dims]
        r2.append(float(1 - ((h[real].float() - y) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()))
    teacher.train(was[0]), student.train(was[1])
    return r2


def sliced_student(space, teacher, layers: list[int], *, seed: int, pooling: str):
    """An ElasticLMForSequenceClassification in `space` with one BERT block per teacher layer (the
    teacher's head width, the widest FFN of the grid), without dropout like a run's retrained models;
    the ceiling is lifted (it is a probe)."""
    from elasticlm.models.modeling import ElasticLMConfig, ElasticLMForSequenceClassification
    from elasticlm.space import Architecture, LayerChoice

    heads = space.hidden_size // (teacher.config.hidden_size // teacher.config.num_attention_heads)
    arch = Architecture([LayerChoice("bert", "none", 2 * space.hidden_size, heads) for _ in layers])
    space = replace(space, num_layers=len(layers), param_ceiling=10 ** 12)
    cfg = ElasticLMConfig.from_space(space, arch, num_labels=teacher.config.num_labels, classifier_pooling=pooling,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # as a run's models
    with torch.random.fork_rng():  # seeded initialisation, the global generator left as it was
        torch.manual_seed(seed)
        return ElasticLMForSequenceClassification(cfg)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("name")
    ap.add_argument("--mode", choices=("teacher", "slice", "scratch"), required=True)
    ap.add_argument("--layers", default="0,1,2,3", help="teacher layers to keep, in order")
    ap.add_argument("--rank", type=int, default=0, help="--mode teacher: cut the word embedding to this rank")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--against", type=Path, nargs="*", default=[],
                    help="folders of other models' seeds (RUN/ceiling/NAME, RUN/levers/NAME): print the paired "
                         "difference with its 95%% bootstrap interval over the examples")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE over the run's retraining recipe")
    args = ap.parse_args(argv)
    from elasticlm.data.batching import pad_batch, rows_of
    from elasticlm.distill.init import embedding_from_teacher
    from elasticlm.space import SearchSpace
    from elasticlm.train.retrain import prepare_task, retrain_model

    cfg = recipe(args.run, args.overrides)
    layers = [int(x) for x in args.layers.split(",")]
    data = prepare_task(cfg)
    teacher = data.teacher.model
    space = SearchSpace.from_dict(json.loads((args.run / "supernet" / "config.json").read_text())["space"])
    out = args.run / "ceiling" / args.name
    results = []
    for seed in args.seeds:
        if args.mode == "teacher":
            model = cut_teacher(teacher, layers, args.rank)
        else:
            model = sliced_student(space, teacher, layers, seed=seed, pooling="cls" if args.mode == "slice" else "mean")
            if args.mode == "scratch":
                embedding_from_teacher(model, teacher, std=cfg.embedding_std, seed=seed)
            else:
                probe = pad_batch(rows_of(data.train, list(range(min(512, len(data.train))))), data.pad_id)
                r2 = slice_teacher(model, teacher, layers, probe)
                print("hidden states kept (R², embedding output first): " + " ".join(f"{x:.2f}" for x in r2))
        results.append(retrain_model(model, data, cfg, out / f"seed-{seed}", seed=seed,
                                     run_config={"ceiling": recipe_of(args)}))
    params = results[0]["params"]
    line = [f"{args.name}: {args.mode} layers {args.layers}" + (f" rank {args.rank}" if args.rank else ""),
            f"{params / 1e6:.2f}M"]
    for split in ("dev", "test"):
        if all(split in r for r in results):
            v = np.array([r[split][data.spec.main_metric] for r in results]) * 100
            line.append(f"{split} {v.mean():.2f} ± {v.std(ddof=1) if len(v) > 1 else 0:.2f}")
    print(f"{len(results)} seeds  " + "  ".join(line))
    for other in args.against:
        print(f"{args.name} minus {other}: " + paired(out, other, data.spec.main_metric))


def recipe_of(args) -> dict:
    """What a model folder was made with (what it is compared against is not part of it)."""
    return {k: v for k, v in vars(args).items() if k != "against"} | {"run": str(args.run)}


def paired(mine: Path, other: Path, metric: str) -> str:
    """The seed-mean difference of `metric` between the models saved under two folders (every
    predictions.npz below each), on dev and test, with its 95% paired-bootstrap interval."""
    from elasticlm.experiment.significance import as_predictions, paired_bootstrap

    loaded = []
    for folder in (mine, other):
        files = sorted(folder.glob("**/predictions.npz"))
        if not files:
            raise SystemExit(f"{folder}: no predictions.npz below it; give a folder of retrained models")
        loaded.append([dict(np.load(f)) for f in files])
    cells = []
    for split in ("dev", "test"):
        a, b = ([as_predictions(True, z[split]) for z in seeds if split in z] for seeds in loaded)
        if a and b:
            r = paired_bootstrap(metric, loaded[0][0][f"{split}_labels"], a, b)
            cells.append(f"{split} {r['diff'] * 100:+.1f} [{r['ci95'][0] * 100:+.1f}, {r['ci95'][1] * 100:+.1f}] "
                         f"({len(a)} vs {len(b)} seeds)")
    return "  ".join(cells)


if __name__ == "__main__":
    main(sys.argv[1:])
