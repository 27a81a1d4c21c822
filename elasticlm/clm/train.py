"""Training objectives of the causal pipeline, for `elasticlm.train.engine.fit`.

    CausalPretrain   next-token loss on packed text blocks, optionally mixed with the forward KL to
                     the causal teacher's logits (weight `kd_weight`) and plus the relational loss
                     on its hidden states through learned projections (weight `hidden_weight`)
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
from elasticlm.clm.losses import head_loss
from elasticlm.distill.losses import HiddenProjection, hidden_loss, layer_map
from elasticlm.distill.minillm import (importance_weights, mix_logprobs, policy_gradient_loss, returns,
                                       single_step_loss, token_logprobs)
from elasticlm.errors import ElasticLMError
from elasticlm.runtime import Dist, autocast
from elasticlm.train.engine import TrainConfig, step_rows


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
    """Mean next-token cross-entropy of unpadded blocks B×N (the logits a slice at a time)."""
    h = model.elasticlm(input_ids=ids, return_dict=True).last_hidden_state  # B×N×d
    return head_loss(*_head_args(model, h[:, :-1].flatten(0, 1)), ids[:, 1:].reshape(-1))[0]


def _head_args(model, h: torch.Tensor) -> tuple:
    """(features M×e, tied decoder weight V×e, bias V) of the elasticlm LM head for hidden states M×d."""
    head = model.lm_head
    return head.features(h), head.decoder.weight, head.bias


def teacher_states(teacher, ids: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """The causal teacher's hidden states (L_t + 1 tensors B×N×d_t, the last one after its final norm,
    which is what its LM head reads) and its logits at the last position (B×V_t), computed without
    its full B×N×V_t logits."""
    import inspect

    dev = teacher.device
    kwargs = {"input_ids": ids.to(dev), "output_hidden_states": True, "use_cache": False, "return_dict": True}
    if "logits_to_keep" in inspect.signature(teacher.model.forward).parameters:
        kwargs["logits_to_keep"] = 1
    with torch.no_grad(), teacher.compute():
        out = teacher.model(**kwargs)
    return out.hidden_states, out.logits[:, -1]


def check_teacher_head(teacher, hidden: torch.Tensor, last_logits: torch.Tensor) -> None:
    """The sliced KL applies the teacher's output embedding to its last hidden states; refuse a
    teacher whose logits are more than that (a soft cap, a scale), rather than distil the wrong ones."""
    with torch.no_grad(), teacher.compute():
        mine = teacher.model.get_output_embeddings()(hidden[:, -1]).float()
    if not torch.allclose(mine, last_logits.float(), atol=1e-2 * float(last_logits.float().abs().max()) + 1e-4, rtol=0):
        raise ElasticLMError(f"teacher {teacher.path}: its logits are not its output embedding applied to its last "
                             f"hidden state (soft-capped or scaled?); use kd_weight=0 (hidden-state distillation still works)")


class CausalPretrain:
    """Next-token prediction on blocks (n_blocks×N int32), optionally distilled from the causal
    teacher: its logits (forward KL at every position that has a next token, weight `kd_weight`,
    the next-token loss then weighing 1 − kd_weight) and its hidden states (1 − Pearson ρ between
    each student layer's output, projected by a learned Linear(d, d_t), and teacher layer
    `layer_map`[l]; averaged over the layers, weight `hidden_weight`). The projection is trained and
    checkpointed with the student but is no part of the saved model."""

    def __init__(self, model, blocks: np.ndarray, cfg: TrainConfig, *, teacher=None, kd_weight: float = 0.0,
                 hidden_weight: float = 0.0, dist: Dist | None = None):
        self.model, self.blocks, self.cfg, self.teacher = model, blocks, cfg, teacher
        self.kd_weight = kd_weight if teacher is not None else 0.0
        self.hidden_weight = hidden_weight if teacher is not None else 0.0
        self.dist = dist or Dist()
        self.modules = {"student": model}  # the engine keeps the LM head tied (run_folder)
        self.proj, self._head_checked = None, False
        if self.hidden_weight > 0:
            L = model.config.num_hidden_layers
            self.proj = HiddenProjection(L, model.config.hidden_size, teacher.hidden_size,
                                         generator=torch.Generator().manual_seed(cfg.seed + 2))
            self.lmap = layer_map(L, teacher.num_layers)
            self.modules["projection"] = self.proj

    def batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        rows = step_rows(len(self.blocks), self.cfg, step, micro, self.dist)
        ids = torch.from_numpy(np.asarray(self.blocks[rows], dtype=np.int64))  # B×N
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def losses(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        ids = batch["input_ids"]  # B×N, packed: no padding
        out = self.model.elasticlm(input_ids=ids, output_hidden_states=self.proj is not None, return_dict=True)
        if self.kd_weight > 0 or self.proj is not None:
            t_hidden, t_logits = teacher_states(self.teacher, ids)
        rows = None
        if self.kd_weight > 0:
            if not self._head_checked:
                check_teacher_head(self.teacher, t_hidden[-1], t_logits)
                self._head_checked = True
            t_last = t_hidden[-1][:, :-1].flatten(0, 1)  # M×d_t
            t_head = self.teacher.model.get_output_embeddings()

            def rows(start: int, end: int) -> torch.Tensor:  # the teacher's logits, a slice at a time
                with torch.no_grad(), self.teacher.compute():
                    return t_head(t_last[start:end]).to(ids.device)
        loss, lm, kd = head_loss(*_head_args(self.model, out.last_hidden_state[:, :-1].flatten(0, 1)),
                                 ids[:, 1:].reshape(-1), teacher=rows, kd_weight=self.kd_weight)
        losses = {"lm": lm}
        if self.kd_weight > 0:
            losses["kd"] = kd
        if self.proj is not None:
            L = len(self.lmap)
            hidden = sum(hidden_loss(self.proj(l, out.hidden_states[l + 1]),
                                     t_hidden[self.lmap[l]].to(ids.device), None) for l in range(L)) / L
            losses["hidden"] = hidden
            loss = loss + self.hidden_weight * hidden
        losses["loss"] = loss
        return losses


class SFT:
    """Supervised fine-tuning: cross-entropy on the response tokens only."""

    def __init__(self, model, items: list[Tokenized], cfg: TrainConfig, pad_id: int, dist: Dist | None = None):
        self.model, self.items, self.cfg, self.pad = model, items, cfg, pad_id
        self.dist = dist or Dist()
        self.modules = {"student": model}  # the engine keeps the LM head tied (run_folder)

    def batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        return sft_batch([self.items[i] for i in step_rows(len(self.items), self.cfg, step, micro, self.dist)], self.pad)

    def losses(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        labels = batch["labels"][:, 1:]  # position t predicts token t + 1
        select = F.pad(labels != -100, (0, 1))  # B×N
        h = self.model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        loss = head_loss(*_head_args(self.model, h[select]), labels[labels != -100])[0]  # M rows, a slice at a time
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
        self.modules = {"student": model}  # the engine keeps the LM head tied (run_folder)

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
