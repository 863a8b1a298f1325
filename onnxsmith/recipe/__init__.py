"""Recipes: a TOML file of pipeline steps, run in order with resume (`onnxsmith run`)."""
