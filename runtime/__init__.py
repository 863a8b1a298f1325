"""Everything that runs ONNX Runtime: sessions, data feeding, calibration, timing."""
