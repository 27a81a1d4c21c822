"""Start a student's token embedding from the teacher's (encoder supernets, from-scratch encoder
models and causal-LM students alike).

The student shares the teacher's tokenizer, so row v of the teacher's V×d_t input embedding and row v
of the student's V×e factorized embedding stand for the same token. Projecting the teacher's
(centred) rows onto their top e principal directions keeps the directions along which the teacher
tells tokens apart, and gives the student (and its tied MLM / LM head) a vocabulary geometry from step
0 instead of noise: at demo scale the embedding is most of a 4M-parameter student, and a few thousand
labelled sentences cannot teach it. Measured in the README ("Teacher knowledge in the student";
causal LM: "Causal language models").
"""

from __future__ import annotations

import torch

from elasticlm.errors import ElasticLMError


@torch.no_grad()
def embedding_from_teacher(student, teacher_model, *, std: float = 0.1, seed: int = 0) -> float:
    """Overwrite `student`'s token embedding (V×e) with the teacher's (V×d_t) projected onto its top-e
    principal components (all d_t of them, the other columns 0, when the teacher is narrower),
    rescaled to standard deviation `std`. Returns the share of the teacher embedding's variance kept."""
    target = student.get_input_embeddings().weight  # V×e
    source = teacher_model.get_input_embeddings().weight.detach().float()  # V×d_t
    if source.shape[0] < target.shape[0]:
        raise ElasticLMError(f"teacher embedding has {source.shape[0]:,} rows, the student's {target.shape[0]:,}; "
                             f"build the student with the teacher's tokenizer")
    source = source[:target.shape[0]]  # a teacher may pad its embedding past the tokenizer's ids
    e = target.shape[1]
    k = min(e, *source.shape)  # components there are (a narrower teacher leaves the last e - k columns 0)
    if not std > 0:
        raise ElasticLMError(f"embedding init std={std!r} must be > 0")
    centred = source - source.mean(0, keepdim=True)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # pca_lowrank draws from the global generator: keep it untouched
        torch.manual_seed(int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen)))
        _, s, v = torch.pca_lowrank(centred, q=k, center=False, niter=4)
    proj = torch.zeros(target.shape)  # V×e
    proj[:, :k] = centred @ v[:, :k]
    proj = proj / proj.std().clamp(min=1e-12) * std
    target.copy_(proj.to(target.dtype))
    return float((s[:k] ** 2).sum() / (centred ** 2).sum().clamp(min=1e-12))


EMBEDDING_INITS = ("teacher", "random")


def init_embedding(student, teacher_model, how: str, *, std: float, seed: int, say=None) -> None:
    """`how` = "teacher": `embedding_from_teacher` (saying how much variance it kept); "random": leave
    the student's own initialisation."""
    if how not in EMBEDDING_INITS:
        raise ElasticLMError(f"embedding_init={how!r}: choose from {', '.join(EMBEDDING_INITS)}")
    if how == "random":
        return
    kept = embedding_from_teacher(student, teacher_model, std=std, seed=seed)
    if say is not None:
        e = student.get_input_embeddings().weight.shape[1]
        say(f"token embedding from the teacher's top {e} principal components ({kept:.0%} of its variance, "
            f"std {std:g})")
