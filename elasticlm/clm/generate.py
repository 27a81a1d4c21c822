"""`generate_text`: one prompt through a saved causal model, streamed to the terminal."""

from __future__ import annotations

from pathlib import Path

import torch

from elasticlm.errors import ElasticLMError


def generate_text(model_dir: str | Path, prompt: str, *, max_new_tokens: int = 64, sample: bool = False,
                  temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                  seed: int = 0, chat: bool = True, stream: bool = True) -> str:
    """Generate a reply to `prompt` with the causal model in `model_dir` (a stage folder, model
    folder or export folder). `chat` wraps the prompt in the tokenizer's chat template when it has
    one; `stream` prints tokens as they come (transformers TextStreamer). Returns the reply text."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextStreamer

    import elasticlm.models  # noqa: F401 - registers the Auto classes

    folder = Path(model_dir)
    if (folder / "model" / "config.json").is_file():
        folder = folder / "model"
    if not (folder / "config.json").is_file():
        raise ElasticLMError(f"{model_dir}: no saved model here (config.json missing); give a model or stage folder")
    from elasticlm.distill.fetch import quiet_transformers

    with quiet_transformers():  # no loading bars before the streamed reply
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=(folder / "modeling_elasticlm.py").exists())
    model.eval()
    if chat and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    else:
        text = prompt
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=not chat)["input_ids"]
    limit = int(getattr(model.config, "max_position_embeddings", 0) or 0)
    if limit and ids.shape[1] >= limit:
        raise ElasticLMError(f"the prompt is {ids.shape[1]} tokens, the model's context is {limit}; shorten the prompt")
    new = min(max_new_tokens, limit - ids.shape[1]) if limit else max_new_tokens
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True) if stream else None
    kwargs = dict(max_new_tokens=new, do_sample=sample, streamer=streamer,
                  pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
                  eos_token_id=tokenizer.eos_token_id)
    if sample:
        kwargs.update(temperature=temperature, top_k=top_k, top_p=top_p)
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        out = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
