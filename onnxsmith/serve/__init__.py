"""Hand-off to serving stacks: Triton model repositories, ORT format, a plain package."""
