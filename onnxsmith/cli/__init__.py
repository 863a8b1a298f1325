"""The `onnxsmith` command line: one module per verb, registered in `main.VERBS`."""
