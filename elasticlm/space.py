"""The ELM search space as plain data (no torch needed).

An architecture is, per layer, a `LayerChoice(kind, sharing, ffn_dim, heads)`:

    kind     a registered block kind (`BLOCK_KINDS`):
             "bert"   post-LN BERT block, attention and FFN at width d
             "mobile" MobileBERT-style bottleneck: d -> i = d/4 -> attention + n_ffn FFNs -> d
    sharing  "none" | "qv" (the query projection also serves as value) | "kv" (key serves as value)
    ffn_dim  FFN hidden width f, on the growth grid {d/4, 2d/4, ..., 2d}
    heads    attention heads; must divide the kind's attention width (d for bert, i for mobile)

`SearchSpace` holds the dimensions every architecture shares (d, L, e, V, ...) and does the
sampling, mutation, crossover, validation, size and analytic parameter counting.
Architectures are frozen, hashable and round-trip through JSON.

A block kind is one `BlockKind` entry of `BLOCK_KINDS` (its widths, parameter count, FFN names, tag)
plus its torch modules in `elasticlm.models.blocks.BLOCKS`; nothing else names the kinds.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields

from elasticlm.errors import ElasticLMError
from elasticlm.space_presets import PRESET_SPACES
from elasticlm.space_sampling import draw_within

SHARINGS: tuple[str, ...] = ("none", "qv", "kv")


@dataclass(frozen=True)
class BlockKind:
    """What the space (and everything torch-free) knows about one block kind. Its torch modules are
    registered under the same name in `elasticlm.models.blocks.BLOCKS`."""

    name: str
    """The kind's name in architectures, JSON and block keys ("bert")."""
    letter: str
    """Its one-letter tag in `Architecture.short()` ("B")."""
    title: str
    """Its name in prose and figures ("BERT")."""
    width: Callable[["SearchSpace"], int]
    """The width its attention and FFNs work at, given the space (d, or i = d/4)."""
    ffn_names: Callable[["SearchSpace"], tuple[str, ...]]
    """Module names of its FFNs inside the block, in order ("ffn",) or ("ffn.0", "ffn.1")."""
    params: Callable[["SearchSpace", int, int], int]
    """Parameters of one block: (space, ffn_dim, attention projections) -> count."""
    colours: tuple[str, str, str]
    """Report colours: dark, main (the kind's own colour), light; one per sharing in `SHARINGS` order."""


def _attention_params(w: int, projections: int) -> int:
    return projections * (w * w + w) + 2 * w  # Q, K, [V], O + LayerNorm(w)


def _ffn_params(w: int, f: int) -> int:
    return (w * f + f) + (f * w + w) + 2 * w  # Linear(w, f), Linear(f, w), LayerNorm(w)


def _bert_params(space: "SearchSpace", f: int, projections: int) -> int:
    d = space.hidden_size
    return _attention_params(d, projections) + _ffn_params(d, f)


def _mobile_params(space: "SearchSpace", f: int, projections: int) -> int:
    d, i = space.hidden_size, space.inner_size
    bottleneck = (d * i + i) + 2 * i + (i * d + d) + 2 * d  # Linear(d, i) + LN(i), Linear(i, d) + LN(d)
    return bottleneck + _attention_params(i, projections) + space.mobile_ffns * _ffn_params(i, f)


BLOCK_KINDS: dict[str, BlockKind] = {kind.name: kind for kind in (
    # post-LN BERT block: attention and one FFN at width d
    BlockKind("bert", "B", "BERT", lambda space: space.hidden_size, lambda space: ("ffn",), _bert_params,
              ("#1f4e8c", "#4C72B0", "#8fb0de")),
    # MobileBERT-style bottleneck: d -> i = d/4 -> attention + n_ffn stacked FFNs -> d
    BlockKind("mobile", "M", "Mobile", lambda space: space.inner_size,
              lambda space: tuple(f"ffn.{k}" for k in range(space.mobile_ffns)), _mobile_params,
              ("#a8501a", "#DD8452", "#f2bd94")),
)}
"""Every block kind by name. Adding a kind: an entry here and a Block class in `models.blocks.BLOCKS`."""


def block_kind(name: str) -> BlockKind:
    """The registered `BlockKind` called `name`; an unknown name is an error naming the known ones."""
    try:
        return BLOCK_KINDS[name]
    except (KeyError, TypeError):
        raise ElasticLMError(f"unknown block kind {name!r}; the known kinds are "
                             f"{', '.join(BLOCK_KINDS)} (elasticlm.space.BLOCK_KINDS)") from None


KINDS: tuple[str, ...] = tuple(BLOCK_KINDS)
"""The built-in kinds: what a space offers by default (`SearchSpace.kinds`)."""
# The 6 candidate blocks of a layer, in the paper's order (Fig. 6: 0-2 bert, 3-5 mobile).
CANDIDATES: tuple[tuple[str, str], ...] = tuple((k, s) for k in KINDS for s in SHARINGS)


@dataclass(frozen=True)
class LayerChoice:
    """One layer of an architecture."""

    kind: str
    """Block kind: a name in `BLOCK_KINDS` ("bert" or "mobile")."""
    sharing: str
    """Attention weight sharing: "none", "qv" (V = Q) or "kv" (V = K)."""
    ffn_dim: int
    """FFN hidden width (each of a mobile block's stacked FFNs has this width)."""
    heads: int
    """Number of attention heads."""

    @property
    def candidate(self) -> tuple[str, str]:
        """(kind, sharing): which of the layer's 6 supernet blocks this choice uses."""
        return (self.kind, self.sharing)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Architecture:
    """A full architecture: one `LayerChoice` per layer. Hashable; JSON via `to_json`/`from_json`."""

    layers: tuple[LayerChoice, ...]

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, i: int) -> LayerChoice:
        return self.layers[i]

    def to_list(self) -> list[dict]:
        return [layer.to_dict() for layer in self.layers]

    def to_json(self, **kwargs) -> str:
        return json.dumps({"layers": self.to_list()}, **kwargs)

    @classmethod
    def from_list(cls, layers: Sequence[Mapping]) -> "Architecture":
        out = []
        for i, layer in enumerate(layers):
            if not isinstance(layer, Mapping):
                raise ElasticLMError(f"layer {i}: expected an object with kind/sharing/ffn_dim/heads, got {layer!r}")
            missing = [k for k in ("kind", "sharing", "ffn_dim", "heads") if k not in layer]
            if missing:
                raise ElasticLMError(f"layer {i}: missing field(s) {', '.join(missing)}")
            extra = sorted(set(layer) - {"kind", "sharing", "ffn_dim", "heads"})
            if extra:
                raise ElasticLMError(f"layer {i}: unknown field(s) {', '.join(extra)}")
            for name in ("ffn_dim", "heads"):
                if isinstance(layer[name], bool) or not isinstance(layer[name], int):
                    raise ElasticLMError(f"layer {i}: {name} must be an integer, got {layer[name]!r}")
            for name, allowed in (("kind", tuple(BLOCK_KINDS)), ("sharing", SHARINGS)):
                if not isinstance(layer[name], str):
                    raise ElasticLMError(f"layer {i}: {name} must be a string ({' or '.join(map(repr, allowed))}), "
                                         f"got {json.dumps(layer[name])} ({type(layer[name]).__name__})")
            out.append(LayerChoice(layer["kind"], layer["sharing"], layer["ffn_dim"], layer["heads"]))
        return cls(tuple(out))

    @classmethod
    def from_json(cls, text: str) -> "Architecture":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ElasticLMError(f"architecture is not valid JSON: {err}") from None
        if isinstance(data, Mapping):
            if "layers" not in data:
                raise ElasticLMError('architecture JSON needs a "layers" list')
            data = data["layers"]
        if not isinstance(data, list):
            raise ElasticLMError('architecture JSON must be {"layers": [...]} or a list of layers')
        return cls.from_list(data)

    def short(self) -> str:
        """Compact one-line form, e.g. `B-/264/12 Mqv/132/4 ...`."""
        tags = {"none": "-", "qv": "qv", "kv": "kv"}
        return " ".join(f"{block_kind(l.kind).letter}{tags.get(l.sharing, l.sharing)}/{l.ffn_dim}/{l.heads}"
                        for l in self.layers)


@dataclass(frozen=True)
class ParamCount:
    """Analytic parameter count of an architecture (no task head, no distillation projections)."""

    embedding: int
    encoder: int
    per_layer: tuple[int, ...]

    @property
    def total(self) -> int:
        return self.embedding + self.encoder

    @property
    def non_embedding(self) -> int:
        return self.encoder


@dataclass(frozen=True)
class SearchSpace:
    """Dimensions shared by every architecture of the space, and operations on architectures."""

    hidden_size: int = 528
    """d: the residual-stream width of every block."""
    num_layers: int = 12
    """L: number of layers."""
    num_heads: int = 12
    """H: heads every block starts with (and the most a layer may have)."""
    embedding_size: int = 128
    """e: factorized embedding width (token/position/segment tables are V x e, then Linear(e, d))."""
    vocab_size: int = 30522
    """V: vocabulary (the teacher's tokenizer; 30522 = bert-base-uncased WordPiece)."""
    max_position_embeddings: int = 512
    """N_max: rows of the position table."""
    type_vocab_size: int = 2
    """Rows of the segment table."""
    mobile_ffns: int = 2
    """n_ffn: stacked FFNs inside a mobile block."""
    kinds: tuple[str, ...] = KINDS
    """Block kinds offered in every layer."""
    sharings: tuple[str, ...] = SHARINGS
    """Sharing variants offered in every layer (("none",) is the no-weight-sharing ablation)."""
    param_ceiling: int | None = None
    """Search budget in parameters (total, embeddings included); None = unconstrained."""

    def __post_init__(self):
        for f in fields(self):  # the integer dimensions: a YAML or key=value typo is one line; 4.5e6 is 4500000
            v, is_int = getattr(self, f.name), f.type in ("int", "int | None")
            if is_int and isinstance(v, float) and v.is_integer():
                object.__setattr__(self, f.name, v := int(v))
            if is_int and not (type(v) is int or v is None and f.type == "int | None"):
                raise ElasticLMError(f"{f.name} must be an integer, got {v!r}")
        d = self.hidden_size
        if d <= 0 or d % 4:
            raise ElasticLMError(f"hidden_size must be a positive multiple of 4 (d/4 is the FFN step), got {d}")
        if self.num_layers <= 0:
            raise ElasticLMError(f"num_layers must be positive, got {self.num_layers}")
        bad = [k for k in self.kinds if k not in BLOCK_KINDS] + [s for s in self.sharings if s not in SHARINGS]
        if bad or not self.kinds or not self.sharings:
            raise ElasticLMError(f"kinds must be a non-empty subset of {tuple(BLOCK_KINDS)} "
                                 f"and sharings of {SHARINGS}")
        # every built-in kind's width, as the default space offers them all, and the space's own kinds
        kinds = dict.fromkeys((*KINDS, *self.kinds))
        widths = [("hidden_size", d)] + [(f"the {k} attention width", BLOCK_KINDS[k].width(self)) for k in kinds]
        for name, width in widths:
            if width % self.num_heads:
                raise ElasticLMError(f"num_heads {self.num_heads} must divide {name} {width}")

    # ----- derived dimensions -------------------------------------------------------------
    @property
    def inner_size(self) -> int:
        """i: MobileBERT bottleneck width, d/4 (132 for d=528)."""
        return self.hidden_size // 4

    @property
    def ffn_step(self) -> int:
        """Δ = d/4: the FFN growth step (and the smallest width)."""
        return self.hidden_size // 4

    @property
    def ffn_grid(self) -> tuple[int, ...]:
        """Allowed FFN widths: d/4, 2d/4, ..., 2d."""
        step = self.ffn_step
        return tuple(range(step, 2 * self.hidden_size + 1, step))

    @property
    def candidates(self) -> tuple[tuple[str, str], ...]:
        """(kind, sharing) pairs offered in each layer."""
        return tuple((k, s) for k in self.kinds for s in self.sharings)

    def attention_width(self, kind: str) -> int:
        """Width the attention works at: d for bert blocks, i = d/4 for mobile blocks."""
        return block_kind(kind).width(self)

    def ffn_names(self, kind: str) -> tuple[str, ...]:
        """Module names of a block kind's FFNs inside the block: ("ffn",) for bert, ("ffn.0", ...) for mobile."""
        return block_kind(kind).ffn_names(self)

    def valid_heads(self, kind: str) -> tuple[int, ...]:
        """Head counts allowed for a block kind: 1..H that divide its attention width."""
        width = self.attention_width(kind)
        return tuple(h for h in range(1, self.num_heads + 1) if width % h == 0)

    # ----- size ---------------------------------------------------------------------------
    def size(self, *, with_ffn: bool = True) -> int:
        """Number of architectures: (#candidates [x #FFN widths])^L, heads not counted (they are
        chosen after search and do not change the parameter count)."""
        per_layer = len(self.candidates) * (len(self.ffn_grid) if with_ffn else 1)
        return per_layer**self.num_layers

    # ----- validation ---------------------------------------------------------------------
    def validate(self, arch: Architecture) -> Architecture:
        """Raise `ValueError("layer i: field ...")` for the first problem found; return `arch`."""
        if not isinstance(arch, Architecture):
            raise ElasticLMError(f"expected an Architecture, got {type(arch).__name__}")
        if len(arch) != self.num_layers:
            raise ElasticLMError(f"architecture has {len(arch)} layers, the space has {self.num_layers}")
        grid = self.ffn_grid
        for i, layer in enumerate(arch.layers):
            if layer.kind not in self.kinds:
                raise ElasticLMError(f"layer {i}: kind {layer.kind!r} is not one of {', '.join(self.kinds)}")
            if layer.sharing not in self.sharings:
                raise ElasticLMError(f"layer {i}: sharing {layer.sharing!r} is not one of {', '.join(self.sharings)}")
            f = layer.ffn_dim
            if isinstance(f, bool) or not isinstance(f, int) or f not in grid:
                if isinstance(f, int) and f > grid[-1]:
                    raise ElasticLMError(f"layer {i}: ffn_dim {f} is beyond the maximum {grid[-1]} (2d)")
                raise ElasticLMError(
                    f"layer {i}: ffn_dim {f!r} is off the growth grid (multiples of {self.ffn_step} "
                    f"from {grid[0]} to {grid[-1]})"
                )
            h = layer.heads
            width = self.attention_width(layer.kind)
            if isinstance(h, bool) or not isinstance(h, int) or h < 1 or h > self.num_heads or width % h:
                raise ElasticLMError(
                    f"layer {i}: heads {h!r} must be between 1 and {self.num_heads} and divide the "
                    f"{layer.kind} attention width {width} (valid: {', '.join(map(str, self.valid_heads(layer.kind)))})"
                )
        return arch

    def arch_from_json(self, text: str) -> Architecture:
        return self.validate(Architecture.from_json(text))

    # ----- parameter counting -------------------------------------------------------------
    def embedding_params(self) -> int:
        """Token + position + segment tables (x e), LayerNorm(e), Linear(e, d)."""
        e, d = self.embedding_size, self.hidden_size
        tables = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * e
        return tables + 2 * e + (e * d + d)

    def layer_params(self, layer: LayerChoice) -> int:
        """Parameters of one block (shared projections counted once)."""
        n_proj = 4 if layer.sharing == "none" else 3  # Q, K, [V], O
        return block_kind(layer.kind).params(self, layer.ffn_dim, n_proj)

    def count_params(self, arch: Architecture) -> ParamCount:
        """Analytic count; equals `sum(p.numel())` of the extracted model (tested)."""
        per_layer = tuple(self.layer_params(layer) for layer in arch.layers)
        return ParamCount(self.embedding_params(), sum(per_layer), per_layer)

    def within_budget(self, arch: Architecture, ceiling: int | None = None) -> bool:
        ceiling = self.param_ceiling if ceiling is None else ceiling
        return ceiling is None or self.count_params(arch).total <= ceiling

    # ----- sampling and variation ---------------------------------------------------------
    def _layer_ffn(self, rng: random.Random, layer: int, cand: tuple[str, str],
                   widths: Mapping[tuple[int, str, str], int] | None) -> int:
        if widths is not None:
            return widths[(layer, *cand)]
        return rng.choice(self.ffn_grid)

    def sample_layer(self, rng: random.Random, layer: int,
                     widths: Mapping[tuple[int, str, str], int] | None = None) -> LayerChoice:
        """Uniform over the layer's candidates. FFN width: `widths[(layer, kind, sharing)]` when given
        (the supernet's current per-block widths), else uniform over the grid. Heads = H."""
        cand = rng.choice(self.candidates)
        return LayerChoice(cand[0], cand[1], self._layer_ffn(rng, layer, cand, widths), self.num_heads)

    def sample(self, rng: random.Random, widths: Mapping[tuple[int, str, str], int] | None = None) -> Architecture:
        """One architecture, each layer drawn uniformly (see `sample_layer`)."""
        return Architecture(tuple(self.sample_layer(rng, l, widths) for l in range(self.num_layers)))

    def sample_within(self, rng: random.Random, ceiling: int | None = None, *, floor: int | None = None,
                      widths: Mapping[tuple[int, str, str], int] | None = None,
                      max_tries: int = 1000) -> Architecture:
        """An architecture drawn uniformly from those whose total parameter count lies in
        [`floor`, `ceiling`] (ceiling default: the space's), however tight the range: exact and
        uniform by counting (`elasticlm.space_sampling`)."""
        ceiling = self.param_ceiling if ceiling is None else ceiling
        if ceiling is None and floor is None:
            return self.sample(rng, widths)
        return Architecture(draw_within(self, rng, ceiling, floor, widths, max_tries))

    def param_range(self, widths: Mapping[tuple[int, str, str], int] | None = None) -> tuple[int, int]:
        """Smallest and largest total parameter count of an architecture (at `widths` if given)."""
        per = [[self.layer_params(c) for c in self.layer_options(l, widths)] for l in range(self.num_layers)]
        emb = self.embedding_params()
        return emb + sum(min(p) for p in per), emb + sum(max(p) for p in per)

    def layer_options(self, layer: int, widths: Mapping[tuple[int, str, str], int] | None) -> list[LayerChoice]:
        """Every choice of layer `layer` (at its width in `widths` if given, else every grid width)."""
        ffns = lambda cand: [widths[(layer, *cand)]] if widths is not None else self.ffn_grid  # noqa: E731
        return [LayerChoice(k, s, f, self.num_heads) for k, s in self.candidates for f in ffns((k, s))]

    def mutate(self, arch: Architecture, rng: random.Random, prob: float = 0.1,
               widths: Mapping[tuple[int, str, str], int] | None = None) -> Architecture:
        """Resample each layer independently with probability `prob`."""
        return Architecture(tuple(
            self.sample_layer(rng, l, widths) if rng.random() < prob else layer
            for l, layer in enumerate(arch.layers)
        ))

    def crossover(self, a: Architecture, b: Architecture, rng: random.Random) -> Architecture:
        """Uniform per-layer crossover: each layer taken from `a` or `b` with probability 1/2."""
        if len(a) != len(b):
            raise ElasticLMError(f"crossover needs equal depths, got {len(a)} and {len(b)}")
        return Architecture(tuple(x if rng.random() < 0.5 else y for x, y in zip(a.layers, b.layers)))

    def uniform(self, kind: str = "bert", sharing: str = "none", ffn_dim: int | None = None,
                heads: int | None = None) -> Architecture:
        """The same block in every layer (hand-designed baselines). ffn_dim defaults to d."""
        layer = LayerChoice(kind, sharing, self.hidden_size if ffn_dim is None else ffn_dim,
                            self.num_heads if heads is None else heads)
        return self.validate(Architecture((layer,) * self.num_layers))

    # ----- (de)serialisation --------------------------------------------------------------
    def to_dict(self) -> dict:
        out = asdict(self)
        out["kinds"], out["sharings"] = list(self.kinds), list(self.sharings)
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> "SearchSpace":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ElasticLMError(f"unknown search-space field(s): {', '.join(unknown)}")
        data = dict(data)
        for key in ("kinds", "sharings"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


@dataclass(frozen=True)
class Preset:
    """A named search space with its parameter ceiling and a line about what it is for."""

    name: str
    space: SearchSpace
    about: str = field(default="", compare=False)


PRESETS: dict[str, Preset] = {n: Preset(n, SearchSpace(**dims), about) for n, (dims, about) in PRESET_SPACES.items()}
"""The named search spaces (their dimensions: `elasticlm.space_presets`)."""


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ElasticLMError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None
