"""Training objectives of the causal pipeline, for `elasticlm.train.engine.fit`.

    CausalPretrain   next-token loss on packed text blocks, optionally mixed with the forward KL to
                     the causal teacher's logits (weight `kd_weight`)
    SFT              next-token loss on the response tokens of instruction pairs (the baseline)
    MiniLLM          reverse-KL distillation (`elasticlm.distill.minillm`): responses sampled from
                     mix·teacher + (1 - mix)·student, the exact single-step part, the policy-gradient
                     long-term part with a running-mean baseline, plus the next-token loss on
                     pretraining blocks (weight `lm_weight`)

Sampling uses both models' key/value caches and a generator seeded by (seed, step), so a resumed
run draws the same responses. Shapes: B batch, P prompt, R response, N = P + R, V vocabulary.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from elasticlm.clm.data import Tokenized, pad_left, sft_batch
from elasticlm.distill.minillm import (importance_weights, mix_logprobs, policy_gradient_loss, returns,
                                       single_step_loss, token_logprobs)
from elasticlm.train.engine import Dist, TrainConfig, autocast, step_rows


class Checkpointed(torch.nn.Module):
    """The decoder as the engine checkpoints it: its state without the LM-head weight tied to the
    token embedding (safetensors refuses shared tensors); loading restores the tie."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def state_dict(self, *args, **kwargs):
        state = self.model.state_dict(*args, **kwargs)
        for key in self.model._tied_weights_keys:
            state.pop(key, None)
        return state

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        result = self.model.load_state_dict(state, strict=False, assign=assign)
        missing = [k for k in result.missing_keys if k not in self.model._tied_weights_keys]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"checkpoint does not fit the decoder: missing {missing[:3]}, "
                               f"unexpected {result.unexpected_keys[:3]}")
        self.model.tie_weights()
        return result


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding: B×N 1/0 -> B×N."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def selected_logits(model, ids: torch.Tensor, mask: torch.Tensor, select: torch.Tensor,
                    position_ids: torch.Tensor | None = None) -> torch.Tensor:
    """LM logits only at the positions where `select` (B×N bool) is set: M×V. The LM head over a
    49k vocabulary costs more than the body of a small decoder, so the prompt's positions skip it."""
    h = model.base_model(input_ids=ids, attention_mask=mask, position_ids=position_ids).last_hidden_state  # B×N×d
    return model.lm_head(h[select])  # elasticlm and transformers causal LMs both name their head lm_head


def causal_lm_loss(model, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of unpadded blocks B×N."""
    return model(input_ids=ids, labels=ids).loss


class CausalPretrain:
    """Next-token prediction on blocks (n_blocks×N int32), optionally distilled from teacher logits."""

    def __init__(self, model, blocks: np.ndarray, cfg: TrainConfig, *, teacher=None, kd_weight: float = 0.0,
                 dist: Dist | None = None):
        self.model, self.blocks, self.cfg, self.teacher, self.kd_weight = model, blocks, cfg, teacher, kd_weight
        self.dist = dist or Dist()
        self.modules = {"student": Checkpointed(model)}

    def batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        rows = step_rows(len(self.blocks), self.cfg, step, micro, self.dist)
        ids = torch.from_numpy(np.asarray(self.blocks[rows], dtype=np.int64))  # B×N
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def losses(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        out = self.model(input_ids=batch["input_ids"], labels=batch["input_ids"])
        losses = {"lm": out.loss}
        loss = out.loss
        if self.teacher is not None and self.kd_weight > 0:
            with torch.no_grad():
                t = self.teacher.model(input_ids=batch["input_ids"]).logits  # B×N×V
            kd = F.kl_div(F.log_softmax(out.logits.float(), -1), F.log_softmax(t.float(), -1),
                          log_target=True, reduction="none").sum(-1).mean()
            losses["kd"] = kd
            loss = (1 - self.kd_weight) * out.loss + self.kd_weight * kd
        losses["loss"] = loss
        return losses


class SFT:
    """Supervised fine-tuning: cross-entropy on the response tokens only."""

    def __init__(self, model, items: list[Tokenized], cfg: TrainConfig, pad_id: int, dist: Dist | None = None):
        self.model, self.items, self.cfg, self.pad = model, items, cfg, pad_id
        self.dist = dist or Dist()
        self.modules = {"student": Checkpointed(model)}

    def batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        return sft_batch([self.items[i] for i in step_rows(len(self.items), self.cfg, step, micro, self.dist)], self.pad)

    def losses(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        labels = batch["labels"][:, 1:]  # position t predicts token t + 1
        select = F.pad(labels != -100, (0, 1))  # B×N
        logits = selected_logits(self.model, batch["input_ids"], batch["attention_mask"], select)  # M×V
        loss = F.cross_entropy(logits.float(), labels[labels != -100])
        return {"loss": loss}


@torch.no_grad()
def sample_mixed(student, teacher_model, prompts: list[list[int]], *, pad: int, eos: int, max_new: int,
                 mix: float, generator: torch.Generator, bf16: bool = False) -> dict[str, torch.Tensor]:
    """Responses sampled token by token from mix·p_teacher + (1 - mix)·q_student (cached decoding).
    Returns input_ids B×N (left-padded prompt + response, padded after EOS), attention_mask B×N and
    response_mask B×N (1 on sampled tokens up to and including EOS)."""
    from transformers import DynamicCache

    was_training = student.training
    student.eval()
    ids, mask = pad_left(prompts, pad)  # B×P
    device = next(student.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    s_cache, t_cache = DynamicCache(), DynamicCache()
    cur, cur_mask = ids, mask
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    new_tokens = []
    try:
        with autocast(bf16, device.type):
            for _ in range(max_new):
                pos = positions(cur_mask)[:, -cur.shape[1]:]
                s = student(input_ids=cur, attention_mask=cur_mask, position_ids=pos, cache=s_cache,
                            use_cache=True, logits_to_keep=1).logits[:, -1].float()  # B×V
                probs = F.softmax(s, -1)
                if mix > 0:
                    t = teacher_model(input_ids=cur, attention_mask=cur_mask, position_ids=pos, cache=t_cache,
                                      use_cache=True, logits_to_keep=1).logits[:, -1].float()
                    probs = (1 - mix) * probs + mix * F.softmax(t[:, :probs.shape[-1]], -1)
                nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(device)[:, 0]  # B
                nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
                new_tokens.append((nxt, ~done))
                done = done | (nxt == eos)
                cur = nxt[:, None]
                cur_mask = torch.cat([cur_mask, torch.ones_like(cur)], 1)
                if bool(done.all()):
                    break
    finally:
        student.train(was_training)
    resp = torch.stack([t for t, _ in new_tokens], 1)  # B×R
    live = torch.stack([m for _, m in new_tokens], 1).long()
    return {"input_ids": torch.cat([ids, resp], 1), "attention_mask": torch.cat([mask, live], 1),
            "response_mask": torch.cat([torch.zeros_like(mask), live], 1)}


class MiniLLM:
    """Reverse-KL distillation on mixed-sampled responses plus the LM loss on pretraining blocks."""

    def __init__(self, model, teacher, items: list[Tokenized], blocks: np.ndarray, cfg: TrainConfig, *,
                 pad_id: int, eos_id: int, mix: float = 0.2, lm_weight: float = 1.0, max_new: int = 48,
                 lm_batch: int = 4, baseline_decay: float = 0.9, dist: Dist | None = None):
        self.model, self.teacher, self.items, self.blocks, self.cfg = model, teacher, items, blocks, cfg
        self.pad, self.eos, self.mix, self.lm_weight, self.max_new = pad_id, eos_id, mix, lm_weight, max_new
        self.lm_batch, self.decay = lm_batch, baseline_decay
        self.dist = dist or Dist()
        self.baseline = 0.0
        self.modules = {"student": Checkpointed(model)}

    def state(self) -> dict:
        return {"baseline": self.baseline}

    def restore(self, saved: dict) -> None:
        self.baseline = float(saved.get("baseline", 0.0))

    def batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        rows = step_rows(len(self.items), self.cfg, step, micro, self.dist)
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step * 101 + micro)
        sampled = sample_mixed(self.model, self.teacher.model, [self.items[i].prompt for i in rows], pad=self.pad,
                               eos=self.eos, max_new=self.max_new, mix=self.mix, generator=g, bf16=self.cfg.bf16)
        lm_rows = torch.randint(0, len(self.blocks), (self.lm_batch,), generator=g).tolist()
        sampled["lm_ids"] = torch.from_numpy(np.asarray(self.blocks[sorted(lm_rows)], dtype=np.int64))
        return sampled

    def losses(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        pos = positions(mask)
        target = batch["response_mask"][:, 1:].bool()  # B×(N-1): positions t whose next token was sampled
        select = F.pad(target, (0, 1))  # B×N
        tokens = ids[:, 1:][target]  # M
        s = selected_logits(self.model, ids, mask, select, pos)  # M×V
        with torch.no_grad():
            t = selected_logits(self.teacher.model, ids, mask, select, pos)[:, :s.shape[-1]]
        s_lp = token_logprobs(s[None], tokens[None])[0]  # M
        t_lp = token_logprobs(t[None], tokens[None])[0]
        mix_lp = mix_logprobs(s, t, self.mix).gather(-1, tokens[:, None])[:, 0]
        w = importance_weights(s_lp, mix_lp)  # M
        dense = lambda v: torch.zeros(target.shape, dtype=v.dtype, device=v.device).index_put(  # noqa: E731
            tuple(target.nonzero().T), v)  # M -> B×(N-1)
        rewards = dense((t_lp - s_lp).detach())
        ret = returns(rewards, target)
        single = single_step_loss(s[None], t[None], torch.ones_like(tokens)[None], w[None])
        long = policy_gradient_loss(dense(s_lp), ret - self.baseline, target, dense(w))
        mean_ret = float((ret * target).sum() / target.sum().clamp(min=1))
        self.baseline = self.decay * self.baseline + (1 - self.decay) * mean_ret
        lm = causal_lm_loss(self.model, batch["lm_ids"])
        loss = single + long + self.lm_weight * lm
        return {"loss": loss, "single": single, "long": long, "lm": lm, "reward": rewards.sum() / target.sum().clamp(min=1)}
