"""The ELM supernet: every layer holds all its candidate blocks (6 by default), each with its own
weights; a forward pass runs one block per layer, as an `Architecture` says.

    SuperNet.forward(input_ids, arch, ...)  one path; only the sampled blocks run and get gradients
    SuperNet.widths()                      current FFN width of every block {(layer, kind, sharing): f}
    SuperNet.grow_ffn(layer, kind, sharing, new_width)   function-preserving FFN growth
    SuperNet.extract(arch, head=...)       a standalone HF model with the path's weights
    SuperNet.mlm_logits(h) / task_logits(task, h)   the supernet's own heads (they survive extraction)

Heads: the supernet owns an MLM head (d -> e -> tied to the token embedding) for pretraining and one
task head per task (`add_task_head`) for fine-tuning, with the same parameter names as the standalone
classes, so `extract(arch, head="mlm")` / `extract(arch, head="classification", task=name)` carry the
trained head weights into the standalone model.

An architecture run on the supernet may use an FFN width up to the block's current width (the first
`ffn_dim` hidden units are used) and any valid head count (heads are a forward-time choice).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from elasticlm.errors import ElasticLMError
from elasticlm.models.blocks import NOTHING, Block, Capture, Embeddings, block_state_for, init_weights, make_block
from elasticlm.models.encoder import EncoderOutput, run_encoder, use_eager
from elasticlm.models.modeling import HEADS, ElasticLMConfig, ElasticLMPreTrainedModel, pool
from elasticlm.space import Architecture, SearchSpace


@dataclass(frozen=True)
class SupernetConfig:
    """Everything that defines a supernet besides its weights."""

    space: SearchSpace
    """Dimensions and candidates of every layer."""
    initial_ffn: int | None = None
    """FFN width every block starts at; None = d/4 (dynamic growth). `fixed` ablation: d."""
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.0
    """Dropout on block outputs (0 by default: it costs ~24% of a CPU training step)."""
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    attention_backend: str = "auto"
    """"auto" (eager when training, SDPA otherwise), "eager" or "sdpa"."""
    pad_token_id: int | None = 0

    @property
    def start_ffn(self) -> int:
        return self.space.ffn_step if self.initial_ffn is None else self.initial_ffn


class MLMHead(nn.Module):
    """Linear(d, e) -> GELU -> LN(e) -> the token embedding (passed in, tied) + bias: B×N×d -> B×N×V.
    Same parameter names as the standalone `LMHead` (transform, norm, bias)."""

    def __init__(self, hidden_size: int, embedding_size: int, vocab_size: int, eps: float):
        super().__init__()
        self.transform = nn.Linear(hidden_size, embedding_size)
        self.norm = nn.LayerNorm(embedding_size, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, h: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(F.gelu(self.transform(h))), embedding) + self.bias  # B×N×V


class PooledHead(nn.Module):
    """A classification/regression head, named as in the standalone class: pooler (tanh; over the mean
    of the real tokens, or [CLS]) + classifier, B×N×d -> B×C."""

    def __init__(self, hidden_size: int, num_labels: int, pooling: str = "mean"):
        super().__init__()
        self.pooling = pooling
        self.pooler = nn.Linear(hidden_size, hidden_size)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, h: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(torch.tanh(self.pooler(pool(h, attention_mask, self.pooling))))  # B×C


class SpanHead(nn.Module):
    """A span-extraction head, named as in the standalone QA class: `qa_outputs`, B×N×d -> B×N×2."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.qa_outputs = nn.Linear(hidden_size, 2)

    def forward(self, h: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.qa_outputs(h)  # B×N×2 (start, end)


class TaskHeads(nn.ModuleDict):
    """The task heads by task name. Names may hold dots (`squad-v1.1`), which torch module names cannot:
    they are stored escaped ("%" -> "%25", "." -> "%2E"; so the state-dict keys read
    `task_heads.squad-v1%2E1.…`) and every lookup and listing uses the task's own name."""

    @staticmethod
    def _key(task: str) -> str:
        return task.replace("%", "%25").replace(".", "%2E")

    @staticmethod
    def _name(key: str) -> str:
        return key.replace("%2E", ".").replace("%25", "%")

    def __getitem__(self, task: str) -> nn.Module:
        return super().__getitem__(self._key(task))

    def __setitem__(self, task: str, module: nn.Module) -> None:
        super().__setitem__(self._key(task), module)

    def __delitem__(self, task: str) -> None:
        super().__delitem__(self._key(task))

    def __contains__(self, task) -> bool:
        return isinstance(task, str) and super().__contains__(self._key(task))

    def __iter__(self):
        return (self._name(k) for k in list(self._modules))

    def keys(self):
        return list(self)

    def items(self):
        return [(self._name(k), m) for k, m in self._modules.items()]


def block_key(kind: str, sharing: str) -> str:
    """Name of a candidate inside a layer's ModuleDict, e.g. "bert_qv"."""
    return f"{kind}_{sharing}"


class SuperNet(nn.Module):
    def __init__(self, config: SupernetConfig):
        super().__init__()
        space = config.space
        if config.start_ffn not in space.ffn_grid:
            raise ElasticLMError(f"initial_ffn {config.start_ffn} is not on the FFN grid {space.ffn_grid}")
        self.config, self.space = config, space
        self.embeddings = Embeddings(space.vocab_size, space.embedding_size, space.hidden_size,
                                     space.max_position_embeddings, space.type_vocab_size,
                                     config.layer_norm_eps, config.hidden_dropout_prob, config.pad_token_id)
        self.layers = nn.ModuleList(
            nn.ModuleDict({
                block_key(kind, sharing): make_block(
                    kind, sharing, config.start_ffn, space.num_heads, hidden_size=space.hidden_size,
                    inner_size=space.inner_size, n_ffn=space.mobile_ffns, eps=config.layer_norm_eps,
                    dropout=config.hidden_dropout_prob, attn_dropout=config.attention_probs_dropout_prob)
                for kind, sharing in space.candidates
            })
            for _ in range(space.num_layers)
        )
        self.mlm_head = MLMHead(space.hidden_size, space.embedding_size, space.vocab_size, config.layer_norm_eps)
        self.task_heads = TaskHeads()
        self.apply(lambda m: init_weights(m, config.initializer_range))

    # ----- heads --------------------------------------------------------------------------
    def add_task_head(self, task: str, kind, num_labels: int, generator: torch.Generator | None = None,
                      pooling: str = "mean") -> nn.Module:
        """Add (or return the existing, if it has the same shape) head for `task`: `kind.head(...)` of the
        task kind object `kind` (an `elasticlm.kinds.TaskKind`), tagged with its kind, label count and pooling."""
        if task in self.task_heads:
            head = self.task_heads[task]
            if (head.kind, head.num_labels) != (kind.name, num_labels):
                raise ElasticLMError(f"task head {task!r} exists as {head.kind} with {head.num_labels} outputs, "
                                 f"not {kind.name} with {num_labels}")
            return head
        head = kind.head(self.space.hidden_size, num_labels, pooling)
        head.task_kind, head.kind, head.num_labels, head.pooling = kind, kind.name, num_labels, pooling
        with torch.no_grad():
            for m in head.modules():
                if isinstance(m, nn.Linear):
                    m.weight.normal_(0.0, self.config.initializer_range, generator=generator)
                    m.bias.zero_()
        head.to(self.embeddings.project.weight.device)
        self.task_heads[task] = head
        return head

    def task_head_specs(self) -> dict[str, dict]:
        """{task: {"kind", "num_labels"}} of every task head (to rebuild them before loading)."""
        return {name: {"kind": h.kind, "num_labels": h.num_labels, "pooling": h.pooling}
                for name, h in self.task_heads.items()}

    def get_input_embeddings(self) -> nn.Embedding:
        """The V×e token embedding (tied to the MLM head), as HF models name it."""
        return self.embeddings.word_embeddings

    def mlm_logits(self, h: torch.Tensor) -> torch.Tensor:
        """B×N×d (or R×d) -> B×N×V through the MLM head tied to the token embedding."""
        return self.mlm_head(h, self.embeddings.word_embeddings.weight)

    def task_logits(self, task: str, h: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """B×N×d (+ the B×N mask, for mean pooling) -> B×C (classification/regression) or B×N×2 (qa)."""
        if task not in self.task_heads:
            raise ElasticLMError(f"the supernet has no head for task {task!r} (heads: {', '.join(self.task_heads) or 'none'})")
        return self.task_heads[task](h, attention_mask)

    # ----- paths --------------------------------------------------------------------------
    def block(self, layer: int, kind: str, sharing: str) -> Block:
        return self.layers[layer][block_key(kind, sharing)]

    def blocks(self):
        """Yield ((layer, kind, sharing), block) for all candidate blocks."""
        for l, layer in enumerate(self.layers):
            for kind, sharing in self.space.candidates:
                yield (l, kind, sharing), layer[block_key(kind, sharing)]

    def widths(self) -> dict[tuple[int, str, str], int]:
        """Current FFN width of every block (what `SearchSpace.sample(widths=...)` takes)."""
        return {key: block.ffn_dim for key, block in self.blocks()}

    def path(self, arch: Architecture) -> list[Block]:
        """The blocks `arch` runs through, after checking it fits this supernet."""
        self.space.validate(arch)
        out = []
        for l, choice in enumerate(arch):
            block = self.block(l, choice.kind, choice.sharing)
            if choice.ffn_dim > block.ffn_dim:
                raise ElasticLMError(f"layer {l}: ffn_dim {choice.ffn_dim} exceeds the supernet block's current "
                                 f"width {block.ffn_dim} ({choice.kind}/{choice.sharing})")
            out.append(block)
        return out

    def path_parameters(self, arch: Architecture) -> list[nn.Parameter]:
        """Parameters that a forward along `arch` uses (embeddings + the path's blocks)."""
        params = list(self.embeddings.parameters())
        for block in self.path(arch):
            params += list(block.parameters())
        return params

    def forward(self, input_ids: torch.Tensor | None, arch: Architecture, attention_mask=None,
                token_type_ids=None, position_ids=None, inputs_embeds=None, *, causal: bool = False,
                capture: Capture = NOTHING) -> EncoderOutput:
        """Run one path. input_ids: B×N -> EncoderOutput (last_hidden_state B×N×d, captures)."""
        blocks = self.path(arch)
        return run_encoder(self.embeddings, blocks, input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids, position_ids=position_ids, inputs_embeds=inputs_embeds,
                           heads=[c.heads for c in arch], ffn_dims=[c.ffn_dim for c in arch], causal=causal,
                           eager=use_eager(self.config.attention_backend, self), capture=capture)

    # ----- growth -------------------------------------------------------------------------
    @torch.no_grad()
    def grow_ffn(self, layer: int, kind: str, sharing: str, new_width: int,
                 generator: torch.Generator | None = None) -> list[tuple]:
        """Widen one block's FFN(s) to `new_width` (on the grid, at most 2d) without changing its
        output. Returns [(old_param, new_param, dim)] for `carry_optimizer_state`."""
        block = self.block(layer, kind, sharing)
        grid = self.space.ffn_grid
        if new_width not in grid or new_width < block.ffn_dim:
            raise ElasticLMError(f"layer {layer} {kind}/{sharing}: cannot grow FFN {block.ffn_dim} -> {new_width} "
                             f"(grid {grid[0]}..{grid[-1]} step {self.space.ffn_step})")
        replaced = []
        for ffn in block.ffns():
            replaced += ffn.grow(new_width, self.config.initializer_range, generator)
        return replaced

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load a supernet state saved after growth: every block is first widened to the FFN width
        the saved tensors have, so a freshly built supernet accepts a grown checkpoint."""
        for (l, kind, sharing), block in self.blocks():
            key = f"layers.{l}.{block_key(kind, sharing)}.{self.space.ffn_names(kind)[0]}.fc_in.weight"
            saved = state_dict.get(key)
            if saved is not None and saved.shape[0] > block.ffn_dim:
                self.grow_ffn(l, kind, sharing, int(saved.shape[0]))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def mean_ffn_width(self) -> float:
        w = self.widths()
        return sum(w.values()) / len(w)

    # ----- extraction ---------------------------------------------------------------------
    def model_config(self, arch: Architecture, **kwargs) -> ElasticLMConfig:
        """The standalone `ElasticLMConfig` for `arch` (kwargs: num_labels, dropout, ...)."""
        defaults = dict(layer_norm_eps=self.config.layer_norm_eps, initializer_range=self.config.initializer_range,
                        hidden_dropout_prob=self.config.hidden_dropout_prob,
                        attention_probs_dropout_prob=self.config.attention_probs_dropout_prob,
                        attention_backend=self.config.attention_backend, pad_token_id=self.config.pad_token_id)
        defaults.update(kwargs)
        return ElasticLMConfig.from_space(self.space, arch, **defaults)

    def extract_state_dict(self, arch: Architecture) -> dict[str, torch.Tensor]:
        """State dict of `ElasticLMModel` for `arch` (copies; FFNs cut to each layer's ffn_dim)."""
        state = {f"embeddings.{k}": v.detach().clone() for k, v in self.embeddings.state_dict().items()}
        for l, (block, choice) in enumerate(zip(self.path(arch), arch)):
            for k, v in block_state_for(block, choice.ffn_dim).items():
                state[f"layers.{l}.{k}"] = v
        return state

    def extract(self, arch: Architecture, head: str = "base", task: str | None = None,
                **config_kwargs) -> ElasticLMPreTrainedModel:
        """A standalone HF model for `arch` with the supernet's weights on that path.

        "mlm" and "causal" carry the supernet's MLM head (decoder tied to the embedding); a task head
        with `task` carries that task's head (and its label count) into its kind's model class (`head`
        must be the kind's `extract_head`: "classification", "qa", ...); "classification" / "qa" without
        `task` get freshly initialised task layers. Distillation projections never travel."""
        task_head, kind = None, None
        if task is not None:
            if task not in self.task_heads:
                raise ElasticLMError(f"the supernet has no head for task {task!r} "
                                 f"(heads: {', '.join(self.task_heads) or 'none'})")
            task_head = self.task_heads[task]
            kind = task_head.task_kind
            if head != kind.extract_head:
                raise ElasticLMError(f"task {task!r} has a {task_head.kind} head: extract it with "
                                     f"head={kind.extract_head!r}")
            for key, value in kind.model_config(task_head).items():
                config_kwargs.setdefault(key, value)
        elif head not in HEADS:
            raise ElasticLMError(f"unknown head {head!r}; choose from {', '.join(HEADS)}")
        if head == "causal":
            config_kwargs.setdefault("is_decoder", True)
        model = (kind.model_class() if kind is not None else HEADS[head])(self.model_config(arch, **config_kwargs))
        base = model if head == "base" else model.elasticlm
        base.load_state_dict(self.extract_state_dict(arch), strict=True)
        with torch.no_grad():
            if head in ("mlm", "causal"):
                model.tie_weights()
                for name in ("transform", "norm"):
                    getattr(model.lm_head, name).load_state_dict(getattr(self.mlm_head, name).state_dict())
                model.lm_head.bias.copy_(self.mlm_head.bias)
            elif task_head is not None:
                for name in kind.head_parts:
                    getattr(model, name).load_state_dict(getattr(task_head, name).state_dict())
        return model
