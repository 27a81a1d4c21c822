"""Export: a trained model as a self-contained HuggingFace folder (modeling code, tokenizer, model
card), optionally with ONNX and int8 ONNX models (docs: README, "Export").

    hf        export_model, find_model: the folder, its checks and export.json
    source    copy_modeling_code: the modeling code copied with relative imports
    card      model_card: README.md with Hub metadata
    onnx      export_onnx, parity, quantize_int8, timing, the sample inputs of the checks
    quality   int8_report: accuracy change and speed-up of the int8 model
"""

from elasticlm.export.hf import export_model, find_model

__all__ = ["export_model", "find_model"]
