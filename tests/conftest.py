"""Fixtures that several test files share.

    tiny_tokenizer  a factory: tiny_tokenizer(words) -> a lower-casing WordPiece BertTokenizerFast whose
                    vocabulary is [PAD] [UNK] [CLS] [SEP] [MASK] (ids 0-4), then `words` in order
    tiny_teacher    the folder of a saved random 2-layer BERT (d=32) and its tokenizer, whose vocabulary
                    is TEACHER_WORDS (POS, NEG, FILL below)
    tiny_space      a SearchSpace small enough for exhaustive model tests
    LastHidden      a module wrapping a model: (input_ids, attention_mask) -> last_hidden_state, for
                    tracing, ONNX export and torch.compile
    cache           an empty elasticlm cache for one test ($ELASTICLM_CACHE, online)

Test files import the word lists with `from conftest import POS, NEG` where their data must be in the
tiny teacher's vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
import random
from pathlib import Path

import pytest
import torch

from elasticlm.space import SearchSpace

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0-4 of every tiny vocabulary
POS = ["good", "great", "fine", "superb", "lovely", "happy"]  # positive adjectives
NEG = ["bad", "awful", "poor", "terrible", "sad", "boring"]  # negative adjectives
FILL = ["the", "movie", "film", "was", "is", "a", "very", "plot", "and", "acting", "story", "what",
        "where", "who", "paris", "london", "rome", "city", "capital", "of", "france", "england",
        "italy", "in", "lives", "bob", "alice", "carol", "?", ".", ","]
TEACHER_WORDS = [*POS, *NEG, *FILL]


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Callable[[Iterable[str]], object]:
    """tiny_tokenizer(words) -> a new BertTokenizerFast with vocabulary SPECIAL_TOKENS + words."""
    from transformers import BertTokenizerFast

    def make(words: Iterable[str]) -> BertTokenizerFast:
        vocab = [*SPECIAL_TOKENS, *words]
        if len(set(vocab)) != len(vocab):
            raise ValueError(f"tiny_tokenizer: duplicate words in {vocab}")
        return BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)

    return make


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory, tiny_tokenizer) -> Path:
    """A random 2-layer BERT (d=32, 4 heads, FFN 64) with a 48-token vocabulary, saved with its tokenizer."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    tok = tiny_tokenizer(TEACHER_WORDS)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        cfg = BertConfig(vocab_size=len(SPECIAL_TOKENS) + len(TEACHER_WORDS), hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=64, max_position_embeddings=128)
        BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_space() -> SearchSpace:
    """d=48, i=12, H=12 -> head counts {1,2,3,4,6,12} for both kinds; FFN grid 12..96; 4 layers, V=97."""
    return SearchSpace(hidden_size=48, num_layers=4, num_heads=12, embedding_size=16, vocab_size=97,
                       max_position_embeddings=64)


class LastHidden(torch.nn.Module):
    """`model`'s last hidden state (B×N×d) from positional (input_ids, attention_mask): what a trace sees."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, attention_mask=attention_mask).last_hidden_state


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    """An empty elasticlm cache at tmp_path/cache ($ELASTICLM_CACHE), with ELASTICLM_OFFLINE unset."""
    root = tmp_path / "cache"
    monkeypatch.setenv("ELASTICLM_CACHE", str(root))
    monkeypatch.delenv("ELASTICLM_OFFLINE", raising=False)
    return root


# --------------------------------------------------------------------------------------------------
# A word-level world for training-stage tests: a random BERT teacher over STAGE_VOCAB, a corpus and a
# sentiment dataset folder written in its words.
#   teacher_dir   the saved teacher (2 layers, d=32) + tokenizer
#   word_corpus   a .txt corpus of 300 random sentences
#   sentiment     a CSV dataset folder (train 120 / dev 30 / test 30) whose label is in the adjective
#   tiny_run_config(space, ...)  a seconds-scale `elasticlm run` config (test_pipeline, test_qa_path)
# --------------------------------------------------------------------------------------------------

STAGE_WORDS = ["good", "great", "fine", "bad", "awful", "poor", "the", "movie", "film", "was", "is", "a", "very",
         "plot", "and", "acting", "story", "city", "of", "in", "bob", "alice", ".", ","]
STAGE_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *STAGE_WORDS]


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("teacher")
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(STAGE_VOCAB)}, do_lower_case=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        BertModel(BertConfig(vocab_size=len(STAGE_VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=64, max_position_embeddings=64)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def word_corpus(tmp_path_factory) -> Path:
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text("\n".join(" ".join(rng.choice(STAGE_WORDS) for _ in range(rng.randint(5, 20))) for _ in range(300)))
    return path


def write_csv(path: Path, header: list[str], rows: Iterable[list]) -> None:
    import csv

    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def user_task(folder: Path, header: list[str], row: Callable[[random.Random], list], seed: int,
              sizes: dict[str, int]) -> Path:
    """A user-dataset folder: one CSV per split in `sizes` (in that order), each row `row(rng)` of one
    `random.Random(seed)`."""
    rng = random.Random(seed)
    for split, n in sizes.items():
        write_csv(folder / f"{split}.csv", header, [row(rng) for _ in range(n)])
    return folder


def _three_word_sentiment(rng: random.Random) -> list:
    label = rng.randint(0, 1)
    word = rng.choice(["good", "great", "fine"] if label else ["bad", "awful", "poor"])
    return [f"the {rng.choice(['movie', 'film', 'plot'])} was very {word} .", label]


@pytest.fixture(scope="session")
def sentiment(tmp_path_factory) -> Path:
    return user_task(tmp_path_factory.mktemp("sentiment"), ["text", "label"], _three_word_sentiment, 0,
                     {"train": 120, "dev": 30, "test": 30})


def tiny_run_config(space: dict, *, pretrain_steps: int, epochs: float, teacher_epochs: float, search_batch: int,
                    checkpoint_every: int, **top):
    """A seconds-scale `RunConfig` over `space` (preset demo, fp32, batch 8, lr 2e-3): `pretrain_steps` of
    supernet pretraining (growth every 3 steps), `epochs` of supernet fine-tuning (2 evaluation paths) and
    of retraining (lr 1e-3), a 4×2 evolution scoring batches of `search_batch`; `top` sets the run's own
    fields (task, teacher, corpus, seed, baselines, ...)."""
    from elasticlm.experiment.run import RunConfig
    from elasticlm.search.evolution import EvolutionConfig
    from elasticlm.search.search_stages import SearchConfig
    from elasticlm.train.engine import TrainConfig
    from elasticlm.train.retrain import RetrainConfig
    from elasticlm.train.supernet import FinetuneConfig, GrowthConfig, PretrainConfig

    def train(**kw) -> TrainConfig:
        return TrainConfig(**{**dict(lr=2e-3, batch_size=8, precision="fp32", progress=False, log_every=2,
                                     checkpoint_every=checkpoint_every), **kw})

    return RunConfig(
        preset="demo", **top,
        pretrain=PretrainConfig(space=dict(space), max_length=16, train=train(max_steps=pretrain_steps),
                                growth=GrowthConfig(every=3, probe_blocks=8, k=3)),
        finetune=FinetuneConfig(teacher_epochs=teacher_epochs, eval_paths=2, train=train(epochs=epochs)),
        search=SearchConfig(evolution=EvolutionConfig(population=4, generations=2, parents=2),
                            batch_size=search_batch, precision="fp32"),
        retrain=RetrainConfig(train=train(epochs=epochs, lr=1e-3)))
