"""Rouge-L of greedy responses to held-out instructions (rouge-score, F-measure, 0-1)."""

from __future__ import annotations

import torch

from elasticlm.clm.data import Tokenized, pad_left
from elasticlm.runtime import autocast


@torch.no_grad()
def greedy_responses(model, tokenizer, items: list[Tokenized], *, max_new: int, batch_size: int = 8,
                     bf16: bool = False) -> list[str]:
    """Greedy, cached `generate()` from each item's prompt (left-padded batches); the decoded responses."""
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    limit = getattr(model.config, "max_position_embeddings", None)
    out = []
    for s in range(0, len(items), batch_size):
        chunk = items[s:s + batch_size]
        ids, mask = pad_left([t.prompt for t in chunk], pad)
        new = max_new if limit is None else max(1, min(max_new, limit - ids.shape[1]))
        with autocast(bf16, device.type):
            gen = model.generate(ids.to(device), attention_mask=mask.to(device), max_new_tokens=new, do_sample=False,
                                 pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
        out += tokenizer.batch_decode(gen[:, ids.shape[1]:].cpu(), skip_special_tokens=True)
    return [t.strip() for t in out]


def rouge_l(predictions: list[str], references: list[str]) -> float:
    """Mean Rouge-L F-measure (stemmed), 0-1."""
    from rouge_score import rouge_scorer

    if not predictions:
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return sum(scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)) / len(predictions)
