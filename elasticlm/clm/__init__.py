"""Causal language models: instruction data, pretraining, SFT and MiniLLM distillation, Rouge-L
evaluation and the `elasticlm clm` stages."""
