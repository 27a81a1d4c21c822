"""The causal pipeline end to end at a tiny size (random Llama teacher with a chat template, a
Dolly-format instruction file, a text corpus): stages, resume/skip, rouge.json, export, generate,
and the bad-input errors (teacher tokenizer mismatch, prompt longer than the context)."""

from __future__ import annotations

import json
import random

import pytest
import torch

from elasticlm.errors import ElasticLMError

WORDS = ["what", "is", "the", "capital", "of", "france", "paris", "rome", "italy", "a", "city", "name",
         "colour", "blue", "red", "sky", "grass", "green", "tell", "me", "about", "cats", "they", "sleep",
         "user", "assistant", ":", "."]
TEMPLATE = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} . {% endfor %}"
            "{% if add_generation_prompt %}assistant : {% endif %}")


def make_tokenizer(tiny_tokenizer, words=WORDS):
    tok = tiny_tokenizer(words)
    tok.eos_token, tok.pad_token = "[SEP]", "[PAD]"
    tok.chat_template = TEMPLATE
    return tok


@pytest.fixture(scope="module")
def clm_inputs(tmp_path_factory, tiny_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("clm")
    tok = make_tokenizer(tiny_tokenizer)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                          eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
        LlamaForCausalLM(cfg).save_pretrained(root / "teacher")
    tok.save_pretrained(root / "teacher")
    rng = random.Random(0)
    rows = []
    for i in range(120):
        q = " ".join(rng.choice(WORDS[:24]) for _ in range(rng.randint(3, 8)))
        rows.append({"instruction": f"{q} {i % 7}" if False else f"{q} " + " ".join(WORDS[i % 24:i % 24 + 2]),
                     "context": "" if i % 3 else "cats sleep", "response": " ".join(rng.choice(WORDS[:24]) for _ in range(5))})
    (root / "dolly.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "corpus.txt").write_text("".join(" ".join(rng.choice(WORDS[:24]) for _ in range(12)) + "\n" for _ in range(300)))
    return root


def tiny_config(root, cache_dir=None, **kw):
    from elasticlm.clm.config import ClmConfig, stage_train

    return ClmConfig(teacher=str(root / "teacher"), corpus=str(root / "corpus.txt"),
                     instructions=str(root / "dolly.jsonl"), context=64, block_size=16, max_blocks=None,
                     max_pairs=1000, max_prompt=40, max_response=12, ascii_share=0.0,
                     pretrain=stage_train(max_steps=3, batch_size=4, lr=1e-3),
                     sft=stage_train(max_steps=3, batch_size=4),
                     distill=stage_train(max_steps=2, batch_size=2, lr=1e-4), sample_tokens=6, eval_prompts=3,
                     eval_tokens=6, precision="fp32", progress=False, **kw)


@pytest.mark.slow  # ~40 s on two idle cores, minutes on a loaded machine
def test_clm_run_end_to_end(clm_inputs, tmp_path, cache, capsys):
    from elasticlm.clm.pipeline import run

    cfg = tiny_config(clm_inputs)
    out = tmp_path / "run"
    scores = run(cfg, out, say=lambda s: None)
    assert set(scores) == {"distilled", "sft", "uniform", "teacher"}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert json.loads((out / "rouge.json").read_text()) == scores
    for name in ("found", "uniform"):
        for stage in ("pretrain", "sft", "distill"):
            assert (out / name / stage / "result.json").is_file()
    assert (out / "export" / "config.json").is_file()
    rows = [json.loads(l) for l in (out / "evaluate" / "responses.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 3
    distill = json.loads((out / "found" / "distill" / "result.json").read_text())
    assert {"single", "long", "lm"} <= set(distill["losses"])
    # a second run skips every stage and gives the same scores
    said = []
    assert run(cfg, out, say=said.append) == scores
    assert any("already complete" in s for s in said) and not any("pretraining the decoder" in s for s in said)

    # export round trip: same logits and same greedy generation
    from transformers import AutoModelForCausalLM

    from elasticlm.clm.pipeline import load_student

    model, tok = load_student(out / "found" / "distill")
    exported = AutoModelForCausalLM.from_pretrained(out / "export", trust_remote_code=True).eval()
    ids = torch.tensor([tok("what is the capital of france")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(exported(ids).logits, model.eval()(ids).logits, atol=1e-5, rtol=1e-5)
        a = exported.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
        b = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(a, b)

    # elasticlm generate streams the reply
    from elasticlm.cli import main

    capsys.readouterr()
    assert main(["generate", str(out / "export"), "what is the capital of france", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.strip() != "" or True  # a random model may emit only special tokens
    assert main(["generate", str(out / "export"), "what " * 80]) == 2  # longer than the 64-token context
    assert "context" in capsys.readouterr().err


def test_teacher_with_another_tokenizer_is_a_user_error(clm_inputs, tmp_path, cache, tiny_tokenizer):
    from elasticlm.clm.pipeline import ClmConfig, check_same_tokenizer
    from elasticlm.distill.teachers import load_teacher

    teacher = load_teacher(str(clm_inputs / "teacher"), kind="causal", dtype="fp32")
    other = make_tokenizer(tiny_tokenizer, WORDS[:-3] + ["dog", "cow", "pig"])
    with pytest.raises(ElasticLMError, match="tokenizer differs") as err:
        check_same_tokenizer(teacher, other, "t")
    assert "\n" not in str(err.value)
    with pytest.raises(ElasticLMError, match="mix"):
        ClmConfig(mix=1.5).validate()


def test_stage_training_is_a_train_config_with_the_pipeline_wide_fields_filled_in():
    from elasticlm.clm.config import ClmConfig, stage_train
    from elasticlm.clm.pipeline import _fields

    cfg = ClmConfig(precision="fp32", seed=3, progress=False)
    train = cfg.train_config(cfg.pretrain)
    assert (train.max_steps, train.batch_size, train.lr, train.weight_decay) == (600, 8, 2e-3, 0.1)
    assert (train.precision, train.seed, train.progress) == ("fp32", 3, False)
    # run_config.json keeps the stage as it did before stages were TrainConfigs (earlier folders resume)
    assert _fields(cfg, "sft")["sft"] == {"steps": 120, "batch_size": 8, "lr": 5e-4, "weight_decay": 0.1}
    assert _fields(ClmConfig(sft=stage_train(max_steps=120, warmup_ratio=0.0)), "sft")["sft"]["warmup_ratio"] == 0.0
    with pytest.raises(ElasticLMError, match="set precision"):
        ClmConfig(distill=stage_train(max_steps=2, precision="bf16")).validate()
    with pytest.raises(ElasticLMError, match="sft.max_steps"):
        ClmConfig(sft=stage_train(max_steps=None)).validate()


def test_uniform_baseline_has_at_most_the_parameters():
    from elasticlm.clm.config import ClmConfig, decoder_space, resolve_arch, uniform_like

    cfg = ClmConfig()
    space = decoder_space(cfg, 49152)
    arch = resolve_arch(cfg)
    base = uniform_like(space, arch)
    assert len({(l.kind, l.sharing, l.ffn_dim) for l in base}) == 1
    assert space.count_params(base).total <= space.count_params(arch).total


def test_objectives_one_step(clm_inputs, tiny_tokenizer, tiny_space, tmp_path):
    """SFT, MiniLLM (mixed sampling, both loss parts, LM loss) and pretraining give finite losses
    and gradients; sampled responses stop at EOS; the tied-weight checkpoint round-trips."""
    import numpy as np

    from elasticlm.clm.data import load_instructions, tokenize_pairs
    from elasticlm.clm.pipeline import new_student
    from elasticlm.clm.train import SFT, CausalPretrain, MiniLLM, sample_mixed
    from elasticlm.distill.teachers import load_teacher
    from elasticlm.train.engine import TrainConfig

    teacher = load_teacher(str(clm_inputs / "teacher"), kind="causal", dtype="fp32")
    tok = teacher.tokenizer
    from dataclasses import replace
    space = replace(tiny_space, vocab_size=len(tok))
    model = new_student(space, space.uniform("mobile", "kv", 24, 2), tok, seed=0)
    items = tokenize_pairs(load_instructions(str(clm_inputs / "dolly.jsonl"), limit=20), tok, max_prompt=40,
                           max_response=10)
    cfg = TrainConfig(batch_size=4, max_steps=1, precision="fp32", progress=False)
    blocks = np.random.default_rng(0).integers(5, len(tok), (6, 16)).astype(np.int32)
    for objective in (SFT(model, items, cfg, tok.pad_token_id), CausalPretrain(model, blocks, cfg),
                      MiniLLM(model, teacher, items, blocks, cfg, pad_id=tok.pad_token_id, eos_id=tok.eos_token_id,
                              max_new=5, lm_batch=2)):
        model.zero_grad()
        losses = objective.losses(objective.batch(0, 0), 0)
        losses["loss"].backward()
        assert torch.isfinite(losses["loss"]) and model.lm_head.transform.weight.grad.abs().sum() > 0
    assert {"single", "long", "lm", "reward"} <= set(losses)
    g = torch.Generator().manual_seed(0)
    s = sample_mixed(model, teacher.model, [items[0].prompt, items[1].prompt[:5]], pad=tok.pad_token_id,
                     eos=tok.eos_token_id, max_new=8, mix=0.5, generator=g)
    resp = s["response_mask"].bool()
    for row, m in zip(s["input_ids"], resp):
        toks = row[m].tolist()
        assert tok.eos_token_id not in toks[:-1]  # nothing is sampled after EOS
    from elasticlm.train.run_folder import load_checkpoint_weights, save_checkpoint

    opt = torch.optim.AdamW(model.parameters())
    folder = save_checkpoint(tmp_path, 1, {"student": model}, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), {})
    other = new_student(space, space.uniform("mobile", "kv", 24, 2), tok, seed=1)
    load_checkpoint_weights(folder, {"student": other})
    assert other.lm_head.decoder.weight is other.elasticlm.embeddings.word_embeddings.weight
    ids = torch.tensor([items[0].prompt])
    with torch.no_grad():
        torch.testing.assert_close(other.eval()(ids).logits, model.eval()(ids).logits)
