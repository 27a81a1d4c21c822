"""`elasticlm run`: the whole method (Algorithm 2) from corpus to compact model, in one run folder.

Stages, each a folder of the run (see README, "The run folder") skipped when its done-marker exists,
resumed from its checkpoints when it was killed part-way:

    supernet/      stage 1: supernet pretraining with PCA-guided growth
    supernet-ft/   stage 2: supernet fine-tuning on the task's first 90% (the task teacher first)
    search/        evolution (or NSGA-II) on the held-out 10%, plus the random-search baseline
    heads/         head-number search on the best architecture → arch.json
    models/NAME/   retraining of the found model and the equal-budget baselines, same recipe
    metrics.json   every model: params, latency, dev and test metrics (+ teacher, majority, tf-idf;
                   the last two are skipped for extractive QA, whose metrics are EM/F1 on dev)
    export/        the found model as a self-contained HF folder
    report.md      plots and tables from the files above

The resolved config is `run_config.json`; a folder made with another config is refused (`force`
starts over). A stage that fails leaves what earlier stages wrote untouched.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

from elasticlm.config import from_dict, to_dict
from elasticlm.errors import ElasticLMError
from elasticlm.run_layout import RunLayout
from elasticlm.runtime import run_jobs
from elasticlm.search.search_stages import SearchConfig
from elasticlm.train.retrain import RetrainConfig
from elasticlm.train.supernet import FinetuneConfig, PretrainConfig

Say = Callable[[str], None]
BASELINES = ("uniform-bert", "uniform-mobile", "random-search")


@dataclass
class RunConfig:
    """The whole pipeline. The top-level fields are set once and passed to every stage."""

    preset: str = "demo"
    """Search space and training defaults: demo, micro, tiny, small."""
    task: str = "rt-polarity"
    """Task name (`elasticlm data list`) or a dataset folder of your own."""
    teacher: str = "all-minilm-l6-v2"
    """Encoder teacher (offline alias, hub id or folder); its task-fine-tuned copy teaches the task."""
    corpus: str = "demo"
    """Pretraining text: demo, a .txt file, a folder of them, or a datasets name."""
    data_dir: str | None = None
    """Where GLUE TSVs / SQuAD JSON are (None: built-in sources)."""
    seed: int = 0
    """Seeds every stage (data order, paths, search, initialisation)."""
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    """Equal-budget models retrained with the same recipe: uniform-bert, uniform-mobile, random-search."""
    tfidf: bool = True
    """Also fit the TF-IDF + logistic regression baseline (C chosen on dev)."""
    export: bool = True
    """Export the found model (a self-contained HF folder) into export/."""
    onnx: bool = False
    """Export an ONNX model beside the HF folder."""
    int8: bool = False
    """Also a dynamically quantised int8 ONNX model, with its accuracy change and speed-up (implies onnx)."""
    report: bool = True
    """Write report.md with plots at the end."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)

    DERIVED: ClassVar[dict[str, str]] = {
        "pretrain.preset": "preset", "pretrain.corpus": "corpus", "pretrain.teacher": "teacher",
        "pretrain.train.seed": "seed",
        "finetune.tasks": "[task]", "finetune.teacher": "teacher", "finetune.data_dir": "data_dir",
        "finetune.train.seed": "seed",
        "search.task": "task", "search.data_dir": "data_dir", "search.evolution.seed": "seed",
        "retrain.task": "task", "retrain.teacher": "teacher", "retrain.data_dir": "data_dir",
        "retrain.corpus": "corpus", "retrain.teacher_epochs": "finetune.teacher_epochs"}
    """Stage fields taken from the run's own (not in its dict form, run_config.json or the YAML)."""

    def __post_init__(self) -> None:
        """The stage configs take the DERIVED fields; one given a different value is an error."""
        for path, source in self.DERIVED.items():
            want = _get(self, source.strip("[]"))
            want = [want] if source.startswith("[") else want
            mine, default = _get(self, path), _stage_default(path)
            if mine != want and mine != default:
                raise ElasticLMError(f"{path} is set by {source.strip('[]')!r}: set {source.strip('[]')} instead")
            _set(self, path, want)

    def resolved(self) -> "RunConfig":
        """A checked copy (its stage configs hold the DERIVED fields: what the stages actually get)."""
        cfg = from_dict(RunConfig, to_dict(self))
        for b in cfg.baselines:
            if b not in BASELINES:
                raise ElasticLMError(f"baselines: unknown {b!r}; choose from {', '.join(BASELINES)}")
        from elasticlm.train.supernet import check_space

        check_space(cfg.preset, cfg.pretrain.space)  # before any folder is claimed
        return cfg


def _stage_default(path: str):
    """What the DERIVED field `path` holds when nobody set it: its stage config's own default."""
    stage, rest = path.split(".", 1)
    return _get({"pretrain": PretrainConfig, "finetune": FinetuneConfig, "search": SearchConfig,
                 "retrain": RetrainConfig}[stage](), rest)


def _get(cfg, path: str):
    for part in path.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _set(cfg, path: str, value) -> None:
    *parents, name = path.split(".")
    setattr(_get(cfg, ".".join(parents)), name, value)


def _say(s: str) -> None:
    print(s, flush=True)


def _write_json(path: Path, data: Any) -> None:
    from elasticlm.io import atomic_file

    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def _claim_run(cfg: RunConfig, out: Path, force: bool) -> None:
    marker = RunLayout(out).run_config
    mine = {"stage": "run", "config": to_dict(cfg)}
    if marker.exists():
        theirs = json.loads(marker.read_text())
        try:  # a folder made before the stage copies left run_config.json holds them, agreeing
            theirs["config"] = to_dict(from_dict(RunConfig, theirs["config"]))
        except (ElasticLMError, KeyError, TypeError):
            pass
        from elasticlm.stage_folder import first_difference, same_config

        if not same_config(theirs, mine):
            if not force:

                raise ElasticLMError(f"{out} holds a run made with another config "
                                     f"({first_difference(theirs, mine)}); use another --out, or --force to "
                                     f"start over")
            shutil.rmtree(out)
    elif out.exists() and any(out.iterdir()):
        if not force:
            raise ElasticLMError(f"{out} is not empty and holds no elasticlm run; choose another --out (or --force)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        _write_json(marker, mine)


def run_pipeline(cfg: RunConfig, out: str | Path, *, force: bool = False, say: Say = _say) -> dict:
    """Run (or resume) every stage into `out`; returns metrics.json's contents."""
    from elasticlm.search.search_stages import run_heads, run_search
    from elasticlm.space import Architecture
    from elasticlm.train.supernet_stages import finetune, pretrain

    cfg = cfg.resolved()
    out = Path(out)
    _check_qa_data(cfg)
    _claim_run(cfg, out, force)
    run = RunLayout(out)
    times: dict[str, float] = {}

    def stage(name: str, fn):
        t0 = time.perf_counter()
        say(f"== {name} ==")
        result = fn()
        times[name] = round(time.perf_counter() - t0, 1)
        return result

    stage("supernet pretraining", lambda: pretrain(cfg.pretrain, run.supernet, say=say))
    stage("supernet fine-tuning", lambda: finetune(cfg.finetune, run.supernet, run.supernet_ft, say=say))
    found = stage("search", lambda: run_search(cfg.search, run.supernet_ft, run.search, say=say))
    best = Architecture.from_list(found["best"]["arch"])
    heads = stage("head search", lambda: run_heads(cfg.search, run.supernet_ft, best, run.heads, say=say))
    final = Architecture.from_list(heads["arch"])
    _write_json(run.arch, {"layers": final.to_list()})
    metrics = stage("retraining", lambda: retrain_all(cfg, out, final, found, say))
    if cfg.tfidf and not skip_for_qa(cfg, "the TF-IDF + logistic regression baseline", say):
        metrics["tfidf-logreg"] = stage("tf-idf baseline", lambda: tfidf_baseline(cfg, out, say))
    _write_json(run.metrics, metrics)
    stage("significance", lambda: significance(cfg, out, metrics, say=say))
    if cfg.export:
        stage("export", lambda: _export(cfg, out, say))
    if cfg.report:
        stage("report", lambda: _report(out, say))
    _write_json(run.timings, {**_previous_timings(out), **times})
    _summary(metrics, say)
    return metrics


def _is_qa(task: str) -> bool:
    """Whether `task` names a built-in task without a label per text (extractive QA, SQuAD); user folders
    are classification/regression."""
    from elasticlm.data.tasks import ALL_TASKS, canonical_name
    from elasticlm.kinds import kind_of

    canon = canonical_name(str(task))
    return canon is not None and kind_of(ALL_TASKS[canon]).label_dtype is None


def _check_qa_data(cfg: RunConfig) -> None:
    """A QA task's files are checked before hours of pretraining: a training and a dev split."""
    if not _is_qa(cfg.task):
        return
    from elasticlm.data.tasks import load_task

    data = load_task(cfg.task, data_dir=cfg.data_dir)
    version = data.spec.name.removeprefix("squad-v")
    for split in ("train", "dev"):
        if split not in data.splits or not len(data.splits[split]):
            raise ElasticLMError(f"task {data.spec.name}: no {split} split in {data.source}; put "
                                 f"{split}-v{version}.json (the official SQuAD JSON) there")


def skip_for_qa(cfg: RunConfig, what: str, say: Say) -> bool:
    """True (after saying so) when `what`, a baseline that predicts one label per text, does not apply."""
    if not _is_qa(cfg.task):
        return False
    say(f"note: {what} is skipped for {cfg.task}: it predicts one label per text, and extractive QA "
        f"predicts answer spans")
    return True


def _previous_timings(out: Path) -> dict:
    f = RunLayout(out).timings
    return json.loads(f.read_text()) if f.exists() else {}


def retrain_all(cfg: RunConfig, out: Path, final, found: dict, say: Say, *, seeds: list[int] | None = None) -> dict:
    """Retrain the found model and the baselines (each of `seeds`, default the run's `retrain.seeds`),
    then measure teacher and majority (`elasticlm run` and `elasticlm compare`). A model's first run
    seed lives in models/NAME/, the others in models/NAME/seed-K/."""
    from elasticlm.kinds import KINDS, kind_of
    from elasticlm.models.folder import load_supernet
    from elasticlm.search.baselines import uniform_bert, uniform_mobile
    from elasticlm.space import Architecture
    from elasticlm.train.retrain import prepare_task, summarize

    run = RunLayout(out)
    seeds = list(seeds or cfg.retrain.seeds)
    first = cfg.retrain.seeds[0]
    folder_of = lambda name, seed: run.model(name, None if seed == first else seed)  # noqa: E731
    net, _ = load_supernet(run.supernet_ft, KINDS)
    space = net.space
    names = ["found", *(b for b in cfg.baselines if b != "random-search" or "random" in found)]
    todo = any(not run.done(folder_of(n, s)).exists() for n in names for s in seeds)
    data = prepare_task(cfg.retrain, vocab_size=space.vocab_size, say=say, targets=todo,
                        max_positions=space.max_position_embeddings)
    task, spec = data.spec.name, data.spec
    ceiling = cfg.search.ceiling or space.param_ceiling or int(found["best"]["params"])
    alike = pretraining_alike(cfg, run)
    scratch_all = cfg.retrain.init == "scratch"
    models = {"found": (space, final, scratch_all)}  # name -> (its space, arch, from scratch)
    if "uniform-bert" in cfg.baselines:
        models["uniform-bert"] = (*uniform_bert(space, ceiling), True)  # its own width d': always from scratch
    if "uniform-mobile" in cfg.baselines:
        models["uniform-mobile"] = (space, uniform_mobile(space, ceiling), scratch_all)
    if "random-search" in cfg.baselines and "random" in found:
        models["random-search"] = (space, Architecture.from_list(found["random"]["arch"]), scratch_all)
    def job(name: str, seed: int):
        sp, arch, scratch = models[name]

        def train(out: Say) -> dict:
            tell = out if cfg.retrain.workers == 1 else (lambda s: out(f"[{name} seed {seed}] {s}"))
            tell(f"-- retraining {name} (seed {seed}) --")
            return retrain_seed(cfg, data, net if not scratch else None, sp, arch, name, seed, folder_of(name, seed),
                                run.path_pretrain(name, seed), alike=alike, say=tell)
        return train

    # the longest first (from scratch: pretrained too), so that side-by-side workers finish together
    order = sorted(((n, s) for n in models for s in seeds), key=lambda ns: not models[ns[0]][2])
    done = dict(zip(order, run_jobs([job(n, s) for n, s in order], cfg.retrain.workers, say)))
    metrics: dict[str, Any] = {}
    for name, (sp, arch, scratch) in models.items():
        results = [done[name, seed] for seed in seeds]
        recipe = ({"weights": "scratch", "embedding": cfg.retrain.embedding_init,
                   "pretrain_steps": alike.train.max_steps if alike is not None else cfg.retrain.pretrain_steps}
                  if scratch else {"weights": "supernet path", "pretrain_steps": 0})
        metrics[name] = {**summarize(results), "recipe": recipe,
                         "latency_ms": _latency(folder_of(name, seeds[0]), run.model_latency(name), kind=kind_of(spec))}
    metrics["teacher"] = _teacher_entry(data, run, spec)
    if skip_for_qa(cfg, "the majority-class baseline", say):
        return metrics
    metrics["majority"] = _reference_predictions(cfg, run, data)
    return metrics


def _teacher_entry(data, run: RunLayout, spec) -> dict:
    """metrics.json's teacher entry: its size, latency here, and the metrics its fine-tuning recorded."""
    from elasticlm.kinds import kind_of

    teacher = data.teacher
    entry = {"params": int(sum(p.numel() for p in teacher.model.parameters())),
             "latency_ms": _latency(Path(str(teacher.path)), run.teacher_latency, kind=kind_of(spec)),
             **{k: v for k, v in data.teacher_metrics.items() if k in ("dev", "test")}}
    # the teacher's own metrics.json keeps its kind's scores (QA: the official percentages)
    entry.update({k: kind_of(spec).fractions(entry[k]) for k in ("dev", "test") if k in entry})
    return entry


def _reference_predictions(cfg: RunConfig, run: RunLayout, data) -> dict:
    """Save the teacher's and the majority class's dev/test predictions (for significance.json) and
    return metrics.json's majority entry (tasks with one label per example)."""
    import numpy as np

    from elasticlm.io import save_arrays
    from elasticlm.kinds import kind_of
    from elasticlm.train.evaluation import majority_metrics
    from elasticlm.train.retrain import teacher_logits

    spec = data.spec
    splits = {"dev": data.dev, **({"test": data.test} if data.test is not None else {})}
    labels = {f"{split}_labels": np.asarray(rows["labels"]) for split, rows in splits.items()}
    if not run.reference_predictions("teacher").exists():
        save_arrays(run.reference_predictions("teacher"), {
            **labels, **{split: teacher_logits(data.teacher, rows, data.pad_id, bf16=cfg.retrain.train.bf16,
                                               device=cfg.retrain.train.torch_device())
                         for split, rows in splits.items()}})
    train_labels = np.asarray(data.train["labels"]).astype(int)
    maj = {"params": 0, "latency_ms": 0.0,
           **{split: majority_metrics(spec, train_labels, rows["labels"]) for split, rows in splits.items()}}
    if kind_of(spec).classes:
        counts = np.bincount(train_labels[train_labels >= 0], minlength=kind_of(spec).num_labels(spec))
        save_arrays(run.reference_predictions("majority"),
                    {**labels, **{split: np.full(len(rows), int(counts.argmax())) for split, rows in splits.items()}})
    return maj


def retrain_seed(cfg: RunConfig, data, net, space, arch, name: str, seed: int, folder: Path, pretrain_dir: Path, *,
                 alike, say: Say) -> dict:
    """One model, one seed, into `folder` (skipped when done): `arch` on the path of `net`, or, when `net`
    is None, from scratch in `space` (teacher embedding; first pretrained with `alike`, the supernet's
    recipe, when given); then `retrain_model`. Its result.json contents."""
    from dataclasses import replace

    from elasticlm.train.retrain import build_model, retrain_model, scratch_net

    scratch, model = net is None, None
    if not RunLayout.done(folder).exists():
        pre = None
        if scratch:
            net = scratch_net(space, arch, data.spec, data.spec.name, seed=seed, teacher_model=data.teacher.model,
                              cfg=cfg.retrain, say=say)
            pre = replace(alike, train=replace(alike.train, seed=seed)) if alike is not None else None
        model = build_model(net, arch, data.spec.name, cfg.retrain, pretrain_dir, say=say, pretrain=pre)
    return retrain_model(model, data, cfg.retrain, folder, seed=seed, say=say,
                         run_config={"model": name, "init": "scratch" if scratch else cfg.retrain.init})


def pretraining_alike(cfg: RunConfig, run: RunLayout):
    """The supernet's stage-1 recipe for a from-scratch model's own path: as many steps (so tokens) as
    the supernet trained, at its batch, learning rate and losses; no growth (the path is fixed). None
    unless `retrain.scratch_pretrain` asks for it and `retrain.pretrain_steps` does not say otherwise."""
    from dataclasses import replace

    if not cfg.retrain.scratch_pretrain or cfg.retrain.pretrain_steps:
        return None
    done = run.done(run.supernet)
    steps = json.loads(done.read_text())["steps"] if done.exists() else cfg.pretrain.train.max_steps
    if not steps:
        return None
    return replace(cfg.pretrain, train=replace(cfg.pretrain.train, max_steps=int(steps), epochs=1.0))


def significance(cfg: RunConfig, out: Path, metrics: dict, *, seeds: list[int] | None = None,
                 say: Say = _say) -> dict | None:
    """significance.json: the found model against every other model of `metrics` (see
    `elasticlm.experiment.significance`); skipped, with a note, for tasks without a label per example."""
    from elasticlm.data.tasks import load_task
    from elasticlm.experiment.significance import write_significance

    if skip_for_qa(cfg, "the paired bootstrap (significance.json)", say):
        return None
    spec = load_task(cfg.task, data_dir=cfg.data_dir).spec
    return write_significance(out, spec, list(seeds or cfg.retrain.seeds), [m for m in metrics if m != "found"],
                              seed=cfg.seed, say=say)


def _latency(model_dir: Path, cache: Path, *, kind) -> float:
    """Median latency (ms) at batch 1, N=128 on this machine of the model saved in `model_dir` (with the
    head of the task kind `kind`), measured once and kept in `cache` (a file of the run folder)."""
    from elasticlm.search.latency import model_latency

    if cache.exists():
        return float(json.loads(cache.read_text())["batch1_ms"])
    import elasticlm.models  # noqa: F401  (registers the Auto classes)

    model = kind.auto_model(model_dir)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = min(128, getattr(model.config, "max_position_embeddings", 128))  # N=128 unless the model is shorter
    ms = float(model_latency(model, batch=1, seq_len=n, device=device))
    _write_json(cache, {"batch1_ms": ms, "seq_len": n, "device": device})
    return ms


def tfidf_baseline(cfg: RunConfig, out: Path, say: Say) -> dict:
    """The TF-IDF + logistic regression baseline of the run's task, fitted once into OUT/tfidf/."""
    from elasticlm.train.classical import tfidf_logreg

    from elasticlm.io import save_arrays

    run = RunLayout(out)
    f, saved = run.done(run.tfidf), run.reference_predictions("tfidf-logreg")
    if f.exists() and saved.exists():
        return json.loads(f.read_text())
    arrays: dict = {}
    res = tfidf_logreg(cfg.task, data_dir=cfg.data_dir, say=say, predictions=arrays)
    save_arrays(saved, arrays)
    _write_json(f, res)
    return res


def _export(cfg: RunConfig, out: Path, say: Say) -> None:
    from elasticlm.export import export_model

    folder = RunLayout(out).export
    if (folder / "config.json").exists():
        say(f"{folder}: already exported")
        return
    export_model(out, folder, onnx=cfg.onnx or cfg.int8, int8=cfg.int8, say=say)


def _report(out: Path, say: Say) -> None:
    from elasticlm.report import write_report

    say(f"report: {write_report(out)}")


def _summary(metrics: dict, say: Say) -> None:
    rows = []
    for name, m in metrics.items():
        dev = ", ".join(f"{k} {v:.4f}" for k, v in m.get("dev", {}).items())
        test = ", ".join(f"{k} {v:.4f}" for k, v in m.get("test", {}).items())
        rows.append(f"  {name:15s} {m.get('params', 0) / 1e6:7.2f}M  dev: {dev or '-'}  test: {test or '-'}")
    say("results:\n" + "\n".join(rows))
