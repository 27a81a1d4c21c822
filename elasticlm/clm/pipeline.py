"""The causal pipeline's stages.

    pretrain   the architecture as a decoder with the teacher's tokenizer: next-token loss on a
               corpus (optionally + the teacher's logits and hidden states)  -> OUT/model/
    sft        supervised fine-tuning on instruction pairs (the baseline)      -> OUT/model/
    distill    MiniLLM reverse-KL distillation from the causal teacher, starting from the SFT
               model (as MiniLLM does), with the LM loss on pretraining text  -> OUT/model/
    evaluate   Rouge-L of greedy responses to the held-out instructions        -> OUT/rouge.json
    run        all of them for the architecture and for a uniform baseline of about the same
               parameters trained the same way, the teacher evaluated too    -> OUT/rouge.json, OUT/export/

Each stage folder holds run_config.json and, when finished, result.json; a finished stage is skipped,
an unfinished one resumes from its newest checkpoint (the training engine's).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch

from elasticlm.config import to_dict
from elasticlm.errors import ElasticLMError
from elasticlm.io import atomic_file
from elasticlm.space import Architecture, SearchSpace
from elasticlm.clm.config import ClmConfig, decoder_space, resolve_arch, uniform_like
from elasticlm.stage_folder import StageFolder
from elasticlm.train.engine import TrainConfig

Say = Callable[[str], None]

def _say(s: str) -> None:
    print(s, flush=True)


# ------------------------------------------------------------------------------------------------
# Architecture and model
# ------------------------------------------------------------------------------------------------


def new_student(space: SearchSpace, arch: Architecture, tokenizer, seed: int):
    """A freshly initialised decoder for `arch` with the tokenizer's special ids."""
    from elasticlm.models import ElasticLMConfig, ElasticLMForCausalLM

    config = ElasticLMConfig.from_space(space, arch, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                        bos_token_id=tokenizer.bos_token_id)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return ElasticLMForCausalLM(config)


def load_student(folder: Path):
    """(model, tokenizer) saved by a stage (its folder or its model/ folder)."""
    from transformers import AutoTokenizer

    from elasticlm.models import ElasticLMForCausalLM

    folder = _model_dir(folder)
    if not (folder / "config.json").is_file():
        raise ElasticLMError(f"{folder}: no saved causal model here (config.json missing); run the previous stage")
    return ElasticLMForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def check_same_tokenizer(teacher, tokenizer, teacher_name: str) -> None:
    """One-line error when the teacher's tokenizer is not the student's."""
    if teacher.tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ElasticLMError(f"teacher {teacher_name}'s tokenizer differs from the student's ({len(teacher.tokenizer):,} "
                             f"vs {len(tokenizer):,} tokens); use the teacher whose tokenizer the student was built with")


def _finish(folder: StageFolder, model, tokenizer, result: dict) -> dict:
    """Save the stage's model into OUT/model/, then its done-marker."""
    model.save_pretrained(folder.out / "model")
    tokenizer.save_pretrained(folder.out / "model")
    return folder.finish(result)


# ------------------------------------------------------------------------------------------------
# Data shared by the stages
# ------------------------------------------------------------------------------------------------


def blocks_for(cfg: ClmConfig, tokenizer):
    from elasticlm.clm.data import causal_blocks

    return causal_blocks(cfg.corpus, tokenizer, cfg.block_size, tokenizer_id=cfg.teacher, max_blocks=cfg.max_blocks)


def instruction_items(cfg: ClmConfig, tokenizer):
    """(train items, held-out items) of `cfg.instructions` in the teacher's chat format."""
    from elasticlm.clm.data import load_instructions, split_pairs, tokenize_pairs

    train, held = split_pairs(load_instructions(cfg.instructions, limit=cfg.max_pairs))
    kw = dict(max_prompt=cfg.max_prompt, max_response=cfg.max_response, ascii_only=cfg.ascii_share)
    train_items, held_items = tokenize_pairs(train, tokenizer, **kw), tokenize_pairs(held, tokenizer, **kw)
    if not train_items or not held_items:
        raise ElasticLMError(f"instructions {cfg.instructions!r}: {len(train_items)} training and {len(held_items)} "
                             f"held-out pairs fit max_prompt={cfg.max_prompt}; give more pairs or a longer max_prompt")
    return train_items, held_items[:cfg.eval_prompts]


def _teacher(cfg: ClmConfig, teacher=None):
    from elasticlm.distill.teachers import load_teacher

    if teacher is None:
        teacher = load_teacher(cfg.teacher, kind="causal", dtype="fp32" if cfg.precision == "fp32" else "bf16")
    if teacher.kind != "causal":
        raise ElasticLMError(f"teacher {cfg.teacher} is an {teacher.kind} model; the causal pipeline needs a causal LM")
    return teacher


# ------------------------------------------------------------------------------------------------
# Stages
# ------------------------------------------------------------------------------------------------


def pretrain(cfg: ClmConfig, out: str | Path, *, arch: Architecture | None = None, teacher=None,
             say: Say = _say) -> dict[str, Any]:
    """Pretrain the decoder of `arch` (default `resolve_arch(cfg)`) into OUT/model/."""
    from elasticlm.clm.train import CausalPretrain
    from elasticlm.train.engine import fit

    cfg.validate()
    out = Path(out)
    arch = arch or resolve_arch(cfg)
    stage_cfg = {"arch": arch.to_list(), **_fields(cfg, "preset", "teacher", "corpus", "context", "block_size",
                                                   "max_blocks", "pretrain", "kd_weight", "embedding_init", "precision",
                                                   "seed")}
    if cfg.kd_hidden_weight:  # only when used, so folders made before the field existed still resume
        stage_cfg["kd_hidden_weight"] = cfg.kd_hidden_weight
    folder = StageFolder(out, "clm-pretrain", stage_cfg)
    if (done := folder.done()) is not None:
        say(f"{out}: pretraining already complete")
        return done
    teacher = _teacher(cfg, teacher)
    tokenizer = teacher.tokenizer
    space = decoder_space(cfg, len(tokenizer))
    model = new_student(space, arch, tokenizer, cfg.seed)
    if cfg.embedding_init == "teacher":
        from elasticlm.distill.init import embedding_from_teacher

        kept = embedding_from_teacher(model, teacher.model, seed=cfg.seed)
        say(f"token embedding from the teacher's top {space.embedding_size} principal components "
            f"({kept:.0%} of its variance)")
    blocks = blocks_for(cfg, tokenizer)
    train = cfg.train_config(cfg.pretrain)
    heldout_n = max(1, len(blocks) // 100)
    folder.claim()
    say(f"pretraining the decoder {arch.short()} ({model.num_parameters():,} parameters) on {cfg.corpus}: "
        f"{len(blocks) - heldout_n:,} blocks of {cfg.block_size}, {cfg.pretrain.max_steps} steps of "
        f"{cfg.pretrain.batch_size}")
    distilled = cfg.kd_weight > 0 or cfg.kd_hidden_weight > 0
    objective = CausalPretrain(model, blocks[:-heldout_n], train, teacher=teacher if distilled else None,
                               kd_weight=cfg.kd_weight, hidden_weight=cfg.kd_hidden_weight)
    state = fit(objective, train, out, total=cfg.pretrain.max_steps, say=say)
    loss = heldout_loss(model, blocks[-heldout_n:], bf16=train.bf16)
    result = {"stage": "clm-pretrain", "steps": state["step"], "tokens": state["tokens"],
              "seconds": round(state["seconds"], 1), "params": model.num_parameters(),
              "heldout_loss": loss, "heldout_ppl": float(torch.tensor(loss).exp())}
    say(f"pretrained: held-out next-token loss {loss:.3f} (perplexity {result['heldout_ppl']:.1f})")
    return _finish(folder, model, tokenizer, result)


@torch.no_grad()
def heldout_loss(model, blocks, *, bf16: bool, batch: int = 16) -> float:
    import numpy as np

    from elasticlm.clm.train import causal_lm_loss
    from elasticlm.runtime import autocast

    model.eval()
    total, n = 0.0, 0
    for s in range(0, min(len(blocks), 256), batch):
        ids = torch.from_numpy(np.asarray(blocks[s:s + batch], dtype=np.int64))
        with autocast(bf16, "cpu"):
            total += float(causal_lm_loss(model, ids)) * len(ids)
        n += len(ids)
    return total / max(n, 1)


def sft(cfg: ClmConfig, src: str | Path, out: str | Path, *, teacher=None, say: Say = _say) -> dict[str, Any]:
    """Supervised fine-tuning of the model in `src` (a stage folder or model folder) into OUT/model/."""
    from elasticlm.clm.train import SFT
    from elasticlm.train.engine import fit

    cfg.validate()
    out, src = Path(out), _model_dir(src)
    stage_cfg = {"src": str(src), **_fields(cfg, "instructions", "max_pairs", "max_prompt", "max_response",
                                            "ascii_share", "sft", "precision", "seed")}
    folder = StageFolder(out, "clm-sft", stage_cfg)
    if (done := folder.done()) is not None:
        say(f"{out}: SFT already complete")
        return done
    model, tokenizer = load_student(src)
    items, _ = instruction_items(cfg, tokenizer)
    train = cfg.train_config(cfg.sft)
    folder.claim()
    say(f"SFT of {src} on {len(items):,} {cfg.instructions} pairs: {cfg.sft.max_steps} steps of "
        f"{cfg.sft.batch_size}")
    state = fit(SFT(model, items, train, tokenizer.pad_token_id), train, out, total=cfg.sft.max_steps, say=say)
    result = {"stage": "clm-sft", "steps": state["step"], "seconds": round(state["seconds"], 1),
              "pairs": len(items), "loss": state.get("losses", {}).get("loss")}
    return _finish(folder, model, tokenizer, result)


def distill(cfg: ClmConfig, src: str | Path, out: str | Path, *, teacher=None, say: Say = _say) -> dict[str, Any]:
    """MiniLLM distillation of the model in `src` (normally the SFT stage's) into OUT/model/."""
    from elasticlm.clm.train import MiniLLM
    from elasticlm.train.engine import fit

    cfg.validate()
    out, src = Path(out), _model_dir(src)
    stage_cfg = {"src": str(src), **_fields(cfg, "teacher", "instructions", "max_pairs", "max_prompt", "ascii_share",
                                            "corpus", "block_size", "max_blocks", "distill", "mix", "lm_weight",
                                            "sample_tokens", "precision", "seed")}
    folder = StageFolder(out, "clm-distill", stage_cfg)
    if (done := folder.done()) is not None:
        say(f"{out}: distillation already complete")
        return done
    model, tokenizer = load_student(src)
    teacher = _teacher(cfg, teacher)
    check_same_tokenizer(teacher, tokenizer, cfg.teacher)
    items, _ = instruction_items(cfg, tokenizer)
    blocks = blocks_for(cfg, tokenizer)
    train = cfg.train_config(cfg.distill)
    folder.claim()
    say(f"MiniLLM distillation of {src} from {cfg.teacher}: {cfg.distill.max_steps} steps of {cfg.distill.batch_size} "
        f"prompts, responses of up to {cfg.sample_tokens} tokens sampled with teacher mix {cfg.mix}")
    objective = MiniLLM(model, teacher, items, blocks, train, pad_id=tokenizer.pad_token_id,
                        eos_id=tokenizer.eos_token_id, mix=cfg.mix, lm_weight=cfg.lm_weight,
                        max_new=cfg.sample_tokens)
    state = fit(objective, train, out, total=cfg.distill.max_steps, say=say, extra_state=objective.state,
                restore_state=objective.restore,
                tokens_of=lambda b: int(b["response_mask"].sum()))
    result = {"stage": "clm-distill", "steps": state["step"], "seconds": round(state["seconds"], 1),
              "losses": state.get("losses", {})}
    return _finish(folder, model, tokenizer, result)


def evaluate(cfg: ClmConfig, models: dict[str, str | Path], out: str | Path, *, teacher=None,
             say: Say = _say) -> dict[str, float]:
    """Rouge-L F (0-1) of each model (name -> stage/model folder, or "teacher") on the held-out
    instructions; writes OUT/rouge.json, OUT/rouge.md and OUT/responses.jsonl."""
    from elasticlm.clm.data import write_jsonl
    from elasticlm.clm.evaluate import greedy_responses, rouge_l
    from elasticlm.train.engine import TrainConfig

    cfg.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = _teacher(cfg, teacher) if any(str(v) == "teacher" for v in models.values()) or teacher else None
    bf16 = TrainConfig(precision=cfg.precision).bf16
    scores, rows, held = {}, [], None
    for name, where in models.items():
        if str(where) == "teacher":
            model, tokenizer = teacher.model, teacher.tokenizer
        else:
            model, tokenizer = load_student(_model_dir(where))
            if teacher is not None:
                check_same_tokenizer(teacher, tokenizer, cfg.teacher)
        if held is None:
            _, held = instruction_items(cfg, tokenizer)
        preds = greedy_responses(model, tokenizer, held, max_new=cfg.eval_tokens, bf16=bf16)
        refs = [t.pair.response for t in held]
        scores[name] = round(rouge_l(preds, refs), 4)
        rows += [{"model": name, "instruction": t.pair.user_text(), "reference": r, "response": p}
                 for t, p, r in zip(held, preds, refs)]
        say(f"{name}: Rouge-L {scores[name]:.4f} on {len(held)} held-out instructions")
    with atomic_file(out / "rouge.json") as tmp:
        tmp.write_text(json.dumps(scores, indent=2) + "\n")
    table = "| model | Rouge-L (F) |\n|---|---|\n" + "".join(f"| {k} | {v:.4f} |\n" for k, v in scores.items())
    with atomic_file(out / "rouge.md") as tmp:
        tmp.write_text(f"Rouge-L on {len(held or [])} held-out {cfg.instructions} instructions, greedy, "
                       f"at most {cfg.eval_tokens} tokens\n\n{table}")
    write_jsonl(out / "responses.jsonl", rows)
    return scores


def run(cfg: ClmConfig, out: str | Path, *, say: Say = _say) -> dict[str, Any]:
    """The whole causal pipeline into OUT (resumable); returns rouge.json's contents."""
    out = Path(out)
    cfg.validate()
    teacher = _teacher(cfg)
    arch = resolve_arch(cfg)
    space = decoder_space(cfg, len(teacher.tokenizer))
    base = uniform_like(space, arch)
    out.mkdir(parents=True, exist_ok=True)
    (out / "arch.json").write_text(arch.to_json() + "\n")
    say(f"architecture {arch.short()} ({space.count_params(arch).total:,} parameters); uniform baseline "
        f"{base.short()} ({space.count_params(base).total:,})")
    if not cfg.arch:
        say(f"note: no --arch given, so this is a seeded sample of the {cfg.preset} space; pass --arch RUN "
            f"(e.g. runs/demo) to use the architecture `elasticlm run` found")
    for name, a in (("found", arch), ("uniform", base)):
        pretrain(cfg, out / name / "pretrain", arch=a, teacher=teacher, say=say)
        sft(cfg, out / name / "pretrain", out / name / "sft", teacher=teacher, say=say)
        distill(cfg, out / name / "sft", out / name / "distill", teacher=teacher, say=say)
    rouge_file = out / "rouge.json"
    if rouge_file.is_file():
        scores = json.loads(rouge_file.read_text())
        say(f"{rouge_file}: evaluation already complete")
    else:
        scores = evaluate(cfg, {"distilled": out / "found" / "distill", "sft": out / "found" / "sft",
                                "uniform": out / "uniform" / "distill", "teacher": "teacher"},
                          out / "evaluate", teacher=teacher, say=say)
        with atomic_file(rouge_file) as tmp:
            tmp.write_text(json.dumps(scores, indent=2) + "\n")
    export_decoder(out / "found" / "distill" / "model", out / "export", say=say)
    return scores


def export_decoder(model_dir: Path, out: Path, *, say: Say = _say) -> str:
    """Export with `elasticlm.export.export_model` when that package is there, else a plain
    save_pretrained copy with the tokenizer. Returns which of the two ("export" / "save_pretrained")."""
    if (out / "config.json").is_file():
        return "done"
    try:
        from elasticlm.export import export_model
    except ImportError:
        export_model = None
    if export_model is not None:
        export_model(model_dir, out, say=say)
        return "export"
    model, tokenizer = load_student(model_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    say(f"saved {out} (save_pretrained; elasticlm.export is not available)")
    return "save_pretrained"


def _model_dir(src: str | Path) -> Path:
    src = Path(src)
    return src / "model" if (src / "model" / "config.json").is_file() else src


def _fields(cfg: ClmConfig, *names: str) -> dict:
    """The config's fields `names` as a stage's run_config.json keeps them (a stage's training as `_stage`)."""
    full = to_dict(cfg)
    return {n: _stage(getattr(cfg, n)) if isinstance(getattr(cfg, n), TrainConfig) else full[n] for n in names}


def _stage(train: TrainConfig) -> dict:
    """A stage's training as run_config.json keeps it: steps, batch_size, lr, weight_decay (as before stages
    were a `TrainConfig`, so earlier folders resume), plus any other field set away from its default."""
    old = {"steps": train.max_steps, "batch_size": train.batch_size, "lr": train.lr,
           "weight_decay": train.weight_decay}
    default = to_dict(TrainConfig())
    return {**old, **{k: v for k, v in to_dict(train).items() if k not in (*old, "max_steps") and v != default[k]}}


def _dist():
    from elasticlm.runtime import Dist

    return Dist()
