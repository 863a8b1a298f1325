"""The scripts serve-export copies verbatim into what it hands off; none is ever imported.

They live in runtime/ because runtime owns every ORT session onnxsmith creates or writes: each
builds its own session and imports only numpy and onnxruntime (plus Ray Serve for the app), so
it runs where onnxsmith is not installed.
"""

from pathlib import Path

PREDICT_SCRIPT = Path(__file__).with_name("package_predict.py")  # a package's predict.py
RAY_SERVE_APP = Path(__file__).with_name("ray_serve_app.py")  # a Ray Serve folder's app.py
