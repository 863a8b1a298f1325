"""PyTorch → ONNX export and distillation: the only part of onnxsmith that imports torch."""
