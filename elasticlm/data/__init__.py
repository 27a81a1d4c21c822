"""Data for ELM: pretraining corpora, downstream tasks, metrics.

    spec      TaskSpec / TaskData, the built-in task registries, `rows_to_dataset`
    tasks     `load_task` (GLUE, SQuAD, demo tasks, a user's folder), `search_split`
              (EfficientBERT's 90/10), `encode_task`; re-exports spec's names
    glue      the GLUE TSV layout and the `datasets` hub
    squad     SQuAD v1.1/v2.0 JSON, windowed features, post-processing, official EM/F1
    userdata  a user's own csv/tsv/jsonl dataset folder
    demo      offline demo tasks and corpus built from registry packages (fixed splits)
    corpus    text sources, packed token blocks cached on disk, the MLM masking collator
    metrics   accuracy, F1, Matthews, Pearson/Spearman, the GLUE average
    batching  `pad_batch` (encoded rows -> B×N tensors), `rows_of`, `eval_batches`
    textfile  reading a user's text file with one-line errors
    cache     the on-disk cache, cache keys (`fingerprint`, `cache_key`) and registry downloads

The loaders import `spec`, never `tasks`; the `elasticlm data` command lives in `elasticlm.commands.data`.
"""
