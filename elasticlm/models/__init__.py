"""Blocks, the supernet, and the standalone HuggingFace models (importing registers the Auto classes)."""

from elasticlm.models.blocks import Capture
from elasticlm.models.growth import carry_optimizer_state
from elasticlm.models.modeling import (
    HEADS,
    ElasticLMConfig,
    ElasticLMForCausalLM,
    ElasticLMForMaskedLM,
    ElasticLMForQuestionAnswering,
    ElasticLMForSequenceClassification,
    ElasticLMModel,
)
from elasticlm.models.supernet import SuperNet, SupernetConfig

__all__ = [
    "HEADS", "Capture", "ElasticLMConfig", "ElasticLMForCausalLM", "ElasticLMForMaskedLM",
    "ElasticLMForQuestionAnswering", "ElasticLMForSequenceClassification", "ElasticLMModel", "SuperNet",
    "SupernetConfig", "carry_optimizer_state",
]
