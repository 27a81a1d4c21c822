"""Standalone elasticlm models as HuggingFace `transformers` classes.

A standalone model is one architecture (one block per layer) built from `ElasticLMConfig`, which
carries the architecture and the space's dimensions and round-trips through `config.json`.

    ElasticLMModel                      embeddings + L blocks -> B×N×d   (counted parameters only)
    ElasticLMForMaskedLM                + Linear(d, e) -> GELU -> LN(e) -> tied V×e decoder (+ bias)
    ElasticLMForSequenceClassification  + [CLS] pooler (Linear(d, d), tanh) -> Linear(d, num_labels);
                                          num_labels == 1 (or problem_type "regression") -> MSE
    ElasticLMForQuestionAnswering       + Linear(d, 2) -> start / end logits
    ElasticLMForCausalLM                causal mask, the MLM-style head tied to the embedding; a
                                          key/value cache and transformers' `generate()` (greedy,
                                          sampling, top-k/top-p, eos, streamers)

All are registered with the Auto classes (`model_type = "elasticlm"`), so `AutoModel*.from_pretrained`
loads a saved folder once `elasticlm` is imported.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    DynamicCache,
    GenerationMixin,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
)

from elasticlm.errors import ElasticLMError
from elasticlm.models.blocks import (
    BLOCKS,
    NOTHING,
    Capture,
    Embeddings,
    compute_dtype,
    decoder_mask,
    init_weights,
    make_block,
)
from elasticlm.models.encoder import EncoderOutput, run_encoder, use_eager
from elasticlm.space import Architecture, SearchSpace


POOLINGS = ("mean", "cls")


def pool(h: torch.Tensor, attention_mask: torch.Tensor | None, how: str) -> torch.Tensor:
    """B×N×d -> B×d: the mean over real tokens ("mean") or the first token ("cls")."""
    if how == "cls":
        return h[:, 0]
    if attention_mask is None:
        return h.mean(1)
    m = attention_mask.to(h.dtype).unsqueeze(-1)  # B×N×1
    return (h * m).sum(1) / m.sum(1).clamp(min=1)


class ElasticLMConfig(PreTrainedConfig):
    """Configuration of a standalone elasticlm model: the space's dimensions plus one architecture."""

    model_type = "elasticlm"

    architecture: list | None = None
    """Per layer {"kind", "sharing", "ffn_dim", "heads"} (see `elasticlm.space.LayerChoice`)."""
    vocab_size: int = 30522
    hidden_size: int = 528
    embedding_size: int = 128
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    """H of the search space: the most heads a layer may have."""
    mobile_ffns: int = 2
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    classifier_dropout: float | None = None
    classifier_pooling: str = "mean"
    """What the sequence-classification head pools: "mean" (of the real tokens' final states) or
    "cls" (the first token's, as BERT). Mean pooling gives a useful signal from the first steps,
    where a [CLS] state still carries little of the input."""
    initializer_range: float = 0.02
    attention_backend: str = "auto"
    """"auto" (eager attention when training, SDPA for inference), "eager" or "sdpa"."""
    is_decoder: bool = False
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        if self.architecture is None:  # a uniform BERT-like default, so ElasticLMConfig() works
            space = self.search_space()
            self.architecture = space.uniform("bert", "none", self.hidden_size, self.num_attention_heads).to_list()
        else:
            self.architecture = [dict(layer) for layer in self.architecture]
            self.num_hidden_layers = len(self.architecture)
        if self.classifier_pooling not in POOLINGS:
            raise ElasticLMError(f"classifier_pooling must be mean or cls, got {self.classifier_pooling!r}")
        if self.attention_backend not in ("auto", "eager", "sdpa"):
            raise ElasticLMError(f"attention_backend must be auto, eager or sdpa, got {self.attention_backend!r}")
        super().__post_init__(**kwargs)
        self.search_space().validate(self.arch)

    @classmethod
    def from_space(cls, space: SearchSpace, arch: Architecture, **kwargs) -> "ElasticLMConfig":
        """Config for `arch` in `space` (validated); kwargs set the other fields (dropout, labels...)."""
        space.validate(arch)
        return cls(
            architecture=arch.to_list(), vocab_size=space.vocab_size, hidden_size=space.hidden_size,
            embedding_size=space.embedding_size, num_hidden_layers=space.num_layers,
            num_attention_heads=space.num_heads, mobile_ffns=space.mobile_ffns,
            max_position_embeddings=space.max_position_embeddings, type_vocab_size=space.type_vocab_size,
            **kwargs,
        )

    def search_space(self) -> SearchSpace:
        """The `SearchSpace` with this config's dimensions (used for validation and counting)."""
        return SearchSpace(
            hidden_size=self.hidden_size, num_layers=self.num_hidden_layers, num_heads=self.num_attention_heads,
            embedding_size=self.embedding_size, vocab_size=self.vocab_size,
            max_position_embeddings=self.max_position_embeddings, type_vocab_size=self.type_vocab_size,
            mobile_ffns=self.mobile_ffns,
        )

    @property
    def arch(self) -> Architecture:
        return Architecture.from_list(self.architecture)


class ElasticLMPreTrainedModel(PreTrainedModel):
    config_class = ElasticLMConfig
    base_model_prefix = "elasticlm"
    _supports_sdpa = True
    _no_split_modules = [cls.__name__ for cls in BLOCKS.values()]
    supports_gradient_checkpointing = True

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Parameter count; `exclude_embeddings` leaves out the whole factorized embedding (tables,
        LayerNorm(e) and Linear(e, d)), as `elasticlm space` counts "non-emb"."""
        params = {id(p): p for p in self.parameters() if p.requires_grad or not only_trainable}
        if exclude_embeddings:
            for p in self.base_model.embeddings.parameters():
                params.pop(id(p), None)
        return sum(p.numel() for p in params.values())

    @torch.no_grad()
    def _init_weights(self, module):
        init_weights(module, self.config.initializer_range)
        if isinstance(module, LMHead):
            nn.init.zeros_(module.bias)


class ElasticLMModel(ElasticLMPreTrainedModel):
    """Embeddings and the L blocks of the architecture. Its parameters are exactly what
    `SearchSpace.count_params` counts."""

    def __init__(self, config: ElasticLMConfig):
        super().__init__(config)
        space = config.search_space()
        self.embeddings = Embeddings(config.vocab_size, config.embedding_size, config.hidden_size,
                                     config.max_position_embeddings, config.type_vocab_size,
                                     config.layer_norm_eps, config.hidden_dropout_prob, config.pad_token_id)
        self.layers = nn.ModuleList(
            make_block(l.kind, l.sharing, l.ffn_dim, l.heads, hidden_size=config.hidden_size,
                       inner_size=space.inner_size, n_ffn=config.mobile_ffns, eps=config.layer_norm_eps,
                       dropout=config.hidden_dropout_prob, attn_dropout=config.attention_probs_dropout_prob)
            for l in config.arch
        )
        self.gradient_checkpointing = False  # transformers' gradient_checkpointing_enable() turns it on
        self.post_init()

    def set_heads(self, layer: int, heads: int) -> None:
        """Change one layer's head count (no parameter changes; validated against the space)."""
        arch = [dict(c) for c in self.config.architecture]
        arch[layer]["heads"] = heads
        self.config.search_space().validate(Architecture.from_list(arch))
        self.config.architecture = arch
        self.layers[layer].heads = heads

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def _attention_backend(self) -> str:
        """`attention_backend`, except that transformers' `attn_implementation="eager"` forces eager."""
        if self.config.attention_backend == "auto" and getattr(self.config, "_attn_implementation", None) == "eager":
            return "eager"
        return self.config.attention_backend

    def encode(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
               inputs_embeds=None, capture: Capture = NOTHING) -> EncoderOutput:
        """The full-detail forward (see `Capture`), used by distillation and analysis."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ElasticLMError("pass exactly one of input_ids or inputs_embeds")
        return run_encoder(self.embeddings, self.layers, input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids, position_ids=position_ids, inputs_embeds=inputs_embeds,
                           causal=self.config.is_decoder, eager=use_eager(self._attention_backend(), self),
                           capture=capture,
                           checkpoint=self._gradient_checkpointing_func
                           if self.gradient_checkpointing and self.training and torch.is_grad_enabled() else None)

    def decode(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
               inputs_embeds=None, cache=None, capture: Capture = NOTHING) -> BaseModelOutputWithPast:
        """One decoder step over `cache` (a transformers `Cache`; a fresh `DynamicCache` when None):
        the new tokens attend to the cached ones and to each other causally, and their keys/values
        are appended. attention_mask, when given, covers cached + new tokens (B×T, 1/0)."""
        x, cache, outs, attns = self._decode(input_ids, attention_mask, token_type_ids, position_ids,
                                             inputs_embeds, cache, capture)
        return BaseModelOutputWithPast(last_hidden_state=x, cache=cache, hidden_states=outs, attentions=attns)

    def _decode(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, cache,
                capture: Capture):
        """`decode` as a plain tuple (last hidden B×n×d, cache, hidden states, attentions): the
        generation loop calls this once per token, so it builds no output object."""
        if not self.config.is_decoder:
            raise ElasticLMError("a key/value cache needs a decoder (is_decoder=True, ElasticLMForCausalLM)")
        if (input_ids is None) == (inputs_embeds is None):
            raise ElasticLMError("pass exactly one of input_ids or inputs_embeds")
        cache = DynamicCache(config=self.config) if cache is None else cache
        ref = input_ids if input_ids is not None else inputs_embeds
        n = ref.shape[1]
        past = cache.get_seq_length()
        limit = self.config.max_position_embeddings
        if past + n > limit:
            raise ElasticLMError(f"{past + n} tokens exceed the model's context of {limit} positions "
                                 f"(max_position_embeddings); shorten the prompt or generate fewer tokens")
        if position_ids is None:
            position_ids = torch.arange(past, past + n, device=ref.device)[None]  # 1×n
        x = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # B×n×d
        mask = decoder_mask(attention_mask, past, n, dtype=compute_dtype(x), device=x.device)
        eager = use_eager(self._attention_backend(), self)
        outs, attns = ([x] if capture.block_output else None), ([] if capture.attn_probs else None)
        for l, block in enumerate(self.layers):
            x, trace = block(x, mask, eager=eager, capture=capture, cache=cache, layer_idx=l)
            if attns is not None:
                attns.append(trace.attn_probs)  # B×H×n×T
            if outs is not None:
                outs.append(x)
        return x, cache, tuple(outs) if outs is not None else None, tuple(attns) if attns is not None else None

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                cache=None, use_cache=None, past_key_values=None, **kwargs) -> BaseModelOutput | tuple:
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (output_hidden_states if output_hidden_states is not None
                                else self.config.output_hidden_states)
        cache = cache if cache is not None else past_key_values
        if cache is not None or (use_cache and self.config.is_decoder):
            result = self.decode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, cache,
                                 Capture(attn_probs=bool(output_attentions), block_output=bool(output_hidden_states)))
            return _returned(result, return_dict, self.config)
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                          Capture(attn_probs=bool(output_attentions), block_output=bool(output_hidden_states)))
        result = BaseModelOutput(last_hidden_state=out.last_hidden_state, hidden_states=out.hidden_states,
                                 attentions=out.attentions)
        return _returned(result, return_dict, self.config)


class LMHead(nn.Module):
    """d -> e transform, then the tied e -> V decoder (weight = token embedding table) plus a bias."""

    def __init__(self, config: ElasticLMConfig):
        super().__init__()
        self.transform = nn.Linear(config.hidden_size, config.embedding_size)
        self.norm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.embedding_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def features(self, h: torch.Tensor) -> torch.Tensor:
        """What enters the tied decoder: B×N×d -> B×N×e."""
        return self.norm(F.gelu(self.transform(h)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(self.features(h), self.decoder.weight, self.bias)  # B×N×V, the bias added by the product


def _returned(output, return_dict, config):
    return output if (return_dict if return_dict is not None else config.return_dict) else output.to_tuple()


class _WithLMHead(ElasticLMPreTrainedModel):
    """Encoder + tied LM head; subclasses say how labels become a loss and which output class."""

    _tied_weights_keys = {"lm_head.decoder.weight": "elasticlm.embeddings.word_embeddings.weight"}
    output_class = MaskedLMOutput

    def __init__(self, config: ElasticLMConfig):
        super().__init__(config)
        self.elasticlm = ElasticLMModel(config)
        self.lm_head = LMHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings):
        self.lm_head.decoder = new_embeddings

    def resize_token_embeddings(self, new_num_tokens=None, pad_to_multiple_of=None, mean_resizing=True):
        """transformers' resize, plus the decoder bias (new tokens start at 0)."""
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        n = embeddings.weight.shape[0]
        old = self.lm_head.bias
        if old.shape[0] != n:
            bias = old.new_zeros(n)
            bias[: min(n, old.shape[0])] = old.detach()[: min(n, old.shape[0])]
            self.lm_head.bias = nn.Parameter(bias, requires_grad=old.requires_grad)
        return embeddings

    def lm_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, **kwargs):
        out = self.elasticlm(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                             output_attentions, output_hidden_states, return_dict=True)
        logits = self.lm_head(out.last_hidden_state)  # B×N×V
        loss = self.lm_loss(logits, labels) if labels is not None else None
        result = self.output_class(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                   attentions=out.attentions)
        return _returned(result, return_dict, self.config)


class ElasticLMForMaskedLM(_WithLMHead):
    output_class = MaskedLMOutput

    def __init__(self, config: ElasticLMConfig):
        if config.is_decoder:
            raise ElasticLMError("ElasticLMForMaskedLM needs is_decoder=False (use ElasticLMForCausalLM)")
        super().__init__(config)

    def lm_loss(self, logits, labels):
        """Cross-entropy at the masked positions (labels -100 elsewhere)."""
        return F.cross_entropy(logits.view(-1, logits.shape[-1]).float(), labels.view(-1), ignore_index=-100)


class ElasticLMForCausalLM(_WithLMHead, GenerationMixin):
    """Causal LM. With `use_cache=True` (what `generate()` passes) or a `cache`, each call runs only
    the new tokens and returns the cache; without, it runs the whole sequence (training).
    With an attention_mask and no position_ids, positions count real tokens only, so left-padded
    prompts get the positions they would have alone."""

    output_class = CausalLMOutputWithPast

    def __init__(self, config: ElasticLMConfig):
        config.is_decoder = True
        super().__init__(config)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache=None, use_cache=None, past_key_values=None,
                logits_to_keep: int = 0, **kwargs):
        cache = cache if cache is not None else past_key_values
        if cache is not None or use_cache:  # the generation step: no intermediate output object
            cfg = self.config
            attn = output_attentions if output_attentions is not None else cfg.output_attentions
            hid = output_hidden_states if output_hidden_states is not None else cfg.output_hidden_states
            capture = Capture(attn_probs=True, block_output=bool(hid)) if attn else \
                Capture(block_output=True) if hid else NOTHING
            h, cache, hidden_states, attentions = self.elasticlm._decode(
                input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, cache, capture)
        else:
            out = self.elasticlm(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                 output_attentions, output_hidden_states, return_dict=True)
            h, hidden_states, attentions = out.last_hidden_state, out.hidden_states, out.attentions  # B×n×d
        if logits_to_keep:
            h = h[:, -logits_to_keep:]
        logits = self.lm_head(h)  # B×n×V (or the last logits_to_keep positions)
        loss = self.lm_loss(logits, labels) if labels is not None else None
        result = CausalLMOutputWithPast(loss=loss, logits=logits, cache=cache, hidden_states=hidden_states,
                                        attentions=attentions)
        return _returned(result, return_dict, self.config)

    def prepare_inputs_for_generation(self, input_ids, *args, **kwargs):
        """transformers' inputs, plus position ids that skip left padding (B×n, n = new tokens).
        The one-token decoding step with a cache (the generation loop's common case) is prepared
        here directly: the new token, the cache, the mask and the position of each row's new token."""
        step = self._decoding_step_inputs(input_ids, args, kwargs)
        if step is not None:
            return step
        inputs = super().prepare_inputs_for_generation(input_ids, *args, **kwargs)
        mask = inputs.get("attention_mask")
        ids = inputs.get("input_ids") if inputs.get("input_ids") is not None else inputs.get("inputs_embeds")
        if inputs.get("position_ids") is None and isinstance(mask, torch.Tensor) and mask.dim() == 2:
            inputs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
        return inputs

    _NOT_FORWARDED = frozenset({"labels", "next_sequence_length", "is_first_iteration"})

    def _decoding_step_inputs(self, input_ids, args, kwargs) -> dict | None:
        """What transformers' `prepare_inputs_for_generation` gives for one new token with a filled
        cache (per-token inputs cut to their last column); None for anything else (the prompt,
        embeddings as input, no cache)."""
        cache = kwargs.get("cache")
        if args or kwargs.get("next_sequence_length") != 1 or cache is None or input_ids is None \
                or kwargs.get("inputs_embeds") is not None or kwargs.get("is_first_iteration"):
            return None
        inputs = {k: v for k, v in kwargs.items() if k not in self._NOT_FORWARDED and v is not None}
        inputs["input_ids"] = input_ids[:, -1:]  # B×1
        for key in ("position_ids", "token_type_ids"):
            if key in inputs:
                inputs[key] = inputs[key][..., -1:]
        mask = kwargs.get("attention_mask")
        if "position_ids" not in inputs and isinstance(mask, torch.Tensor) and mask.dim() == 2:
            inputs["position_ids"] = (mask.sum(-1, keepdim=True) - 1).clamp(min=0)  # B×1: real tokens before it
        return inputs

    def lm_loss(self, logits, labels):
        """Next-token prediction: position t predicts labels[t + 1] (-100 = ignored)."""
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                               labels[:, 1:].reshape(-1), ignore_index=-100)


class ElasticLMForSequenceClassification(ElasticLMPreTrainedModel):
    def __init__(self, config: ElasticLMConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.elasticlm = ElasticLMModel(config)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, **kwargs):
        out = self.elasticlm(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                             output_attentions, output_hidden_states, return_dict=True)
        pooled = torch.tanh(self.pooler(pool(out.last_hidden_state, attention_mask, self.config.classifier_pooling)))  # B×d
        logits = self.classifier(self.dropout(pooled))  # B×num_labels
        loss = None
        if labels is not None:
            if self.config.problem_type is None:
                self.config.problem_type = ("regression" if self.num_labels == 1 else
                                            "single_label_classification" if labels.dtype in (torch.long, torch.int)
                                            else "multi_label_classification")
            if self.config.problem_type == "regression":
                loss = F.mse_loss(logits.squeeze(-1).float(), labels.float().view(-1))
            elif self.config.problem_type == "single_label_classification":
                loss = F.cross_entropy(logits.float(), labels.view(-1))
            else:
                loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        result = SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                          attentions=out.attentions)
        return _returned(result, return_dict, self.config)


class ElasticLMForQuestionAnswering(ElasticLMPreTrainedModel):
    def __init__(self, config: ElasticLMConfig):
        super().__init__(config)
        self.elasticlm = ElasticLMModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, **kwargs):
        out = self.elasticlm(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                             output_attentions, output_hidden_states, return_dict=True)
        start_logits, end_logits = self.qa_outputs(out.last_hidden_state).unbind(-1)  # B×N each
        loss = None
        if start_positions is not None and end_positions is not None:
            n = start_logits.shape[1]  # positions outside the window are ignored
            s, e = start_positions.clamp(0, n), end_positions.clamp(0, n)
            loss = (F.cross_entropy(start_logits.float(), s, ignore_index=n)
                    + F.cross_entropy(end_logits.float(), e, ignore_index=n)) / 2
        result = QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits.contiguous(),
                                              end_logits=end_logits.contiguous(),
                                              hidden_states=out.hidden_states, attentions=out.attentions)
        return _returned(result, return_dict, self.config)


HEADS: dict[str, type[ElasticLMPreTrainedModel]] = {
    "base": ElasticLMModel,
    "mlm": ElasticLMForMaskedLM,
    "classification": ElasticLMForSequenceClassification,
    "qa": ElasticLMForQuestionAnswering,
    "causal": ElasticLMForCausalLM,
}

AutoConfig.register("elasticlm", ElasticLMConfig, exist_ok=True)
for _auto, _cls in ((AutoModel, ElasticLMModel), (AutoModelForMaskedLM, ElasticLMForMaskedLM),
                    (AutoModelForSequenceClassification, ElasticLMForSequenceClassification),
                    (AutoModelForQuestionAnswering, ElasticLMForQuestionAnswering),
                    (AutoModelForCausalLM, ElasticLMForCausalLM)):
    _auto.register(ElasticLMConfig, _cls, exist_ok=True)
