#!/usr/bin/env bash
# Builds a small `onnxsmith bench --report` on real models and screenshots its report.html with
# headless Chromium, to check by eye that every plot and table renders.
#
# Models: the PP-OCR mobile cls model shipped in rapidocr_onnxruntime (A) and an
# `onnxsmith optimize`d copy of it (B), on 4 seeded random 1x3x48x192 feeds, scored against A,
# swept over batch 1,2 and threads 1,2 at 1 s per configuration (about a minute on 2 cores).
# Everything goes to bench/out/report_check/ (git-ignored); the screenshot is
# bench/out/report_check/report.png. Needs Debian's `chromium` (apt-get install chromium).
#
#     bash bench/report_screenshot.sh
set -euo pipefail

cd "$(dirname "$0")/.."
venv=.venv/bin
out=bench/out/report_check
models=$("$venv/python" -P -c \
    'import pathlib, rapidocr_onnxruntime as r; print(pathlib.Path(r.__file__).parent / "models")')

rm -rf "$out"
mkdir -p "$out/feeds"
cp "$models/ch_ppocr_mobile_v2.0_cls_infer.onnx" "$out/cls.onnx"
"$venv/onnxsmith" optimize "$out/cls.onnx" -o "$out/cls.opt.onnx"

"$venv/python" -P - "$out/feeds" <<'EOF'
import sys

import numpy as np

rng = np.random.default_rng(0)
for i in range(4):
    x = rng.random((1, 3, 48, 192), dtype=np.float32)
    np.savez(f"{sys.argv[1]}/{i:03d}.npz", x=x)
EOF

"$venv/onnxsmith" bench "$out/cls.onnx" "$out/cls.opt.onnx" --data "$out/feeds" \
    --reference "$out/cls.onnx" --batch 1,2 --threads 1,2 --seconds 1 --warmup 3 \
    --report "$out/report"

chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --screenshot="$PWD/$out/report.png" --window-size=1400,5000 \
    "file://$PWD/$out/report/report.html"
echo "screenshot: $out/report.png"
