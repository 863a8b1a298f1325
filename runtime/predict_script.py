"""The `predict.py` a package ships: the one ORT session a user runs outside onnxsmith.

It lives in runtime/, which owns every `InferenceSession` onnxsmith writes or creates.
"""

PREDICT_PY = '''"""Runs {model} on one .npz feed (keys = input names); prints output shapes.

    python predict.py feed.npz
"""

import sys

import numpy as np
import onnxruntime as ort

session = ort.InferenceSession("{model}", providers=["CPUExecutionProvider"])
with np.load(sys.argv[1], allow_pickle=False) as feed:
    outputs = session.run(None, {{i.name: feed[i.name] for i in session.get_inputs()}})
for meta, value in zip(session.get_outputs(), outputs):
    print(meta.name, value.shape, value.dtype)
'''
