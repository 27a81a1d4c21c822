"""`elasticlm evaluate`: a saved model folder (save_pretrained or export) scored on a task's dev/test."""

from __future__ import annotations

from pathlib import Path

from elasticlm.errors import ElasticLMError


def evaluate_saved(folder: str | Path, task: str, *, data_dir: str | None = None,
                   max_length: int = 128) -> tuple[str, dict[str, dict[str, float]]]:
    """(the task's name, split -> metrics) of the model saved in `folder` with its tokenizer, on `task`'s
    dev split and, where the task has labelled test data, its test split; `max_length` tokens per example."""
    import torch
    from transformers import AutoTokenizer

    import elasticlm.models  # noqa: F401  (registers the Auto classes)
    from elasticlm.data.tasks import load_task
    from elasticlm.distill.fetch import quiet_transformers
    from elasticlm.kinds import kind_of
    from elasticlm.train.evaluation import Batches, evaluate_model

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ElasticLMError(f"{folder} holds no saved model (config.json); give a save_pretrained or export folder")
    data = load_task(task, data_dir=data_dir)
    kind = kind_of(data.spec)
    with quiet_transformers():
        model = kind.auto_model(folder, trust_remote_code=True)
        tok = AutoTokenizer.from_pretrained(folder)
    if model.config.num_labels != kind.num_labels(data.spec):
        raise ElasticLMError(f"{folder} predicts {model.config.num_labels} labels but task {data.spec.name} has "
                             f"{kind.num_labels(data.spec)}")
    splits = ["dev"] + (["test"] if data.eval_split() == "test" else [])
    out = {}
    for split in splits:
        length = min(max_length, model.config.max_position_embeddings)
        rows = kind.eval_rows(data.splits[split], data.spec, tok, max_length)
        batches = Batches.for_task(data.spec, rows, pad_id=tok.pad_token_id or 0, tokenizer=tok, max_length=length)
        with torch.no_grad():
            out[split] = evaluate_model(model, batches, data.spec, bf16=False)
    return data.spec.name, out
