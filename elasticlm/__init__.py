"""elasticlm: elastic architecture search (ELM) for compact language models."""

__version__ = "0.1.0"

from elasticlm.errors import ElasticLMError  # noqa: E402

__all__ = ["ElasticLMError", "__version__"]
