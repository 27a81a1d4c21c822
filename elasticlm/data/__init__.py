"""Data for ELM: pretraining corpora, downstream tasks, metrics.

    tasks     TaskSpec / TaskData, `load_task` (GLUE, SQuAD, demo tasks, a user's folder),
              `search_split` (EfficientBERT's 90/10), `encode_task`
    glue      the GLUE TSV layout and the `datasets` hub
    squad     SQuAD v1.1/v2.0 JSON, windowed features, post-processing, official EM/F1
    userdata  a user's own csv/tsv/jsonl dataset folder
    demo      offline demo tasks and corpus built from registry packages (fixed splits)
    corpus    text sources, packed token blocks cached on disk, the MLM masking collator
    metrics   accuracy, F1, Matthews, Pearson/Spearman, the GLUE average
    cache     the on-disk cache and registry downloads
    commands  `elasticlm data fetch demo`, `elasticlm data show TASK`
"""
