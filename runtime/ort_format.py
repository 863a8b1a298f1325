"""ORT format (`.ort`) for minimal ONNX Runtime builds, via ORT's own converter."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from pathlib import Path

from onnxsmith.errors import SessionError


def convert_to_ort(source: Path, out_dir: Path) -> tuple[Path, Path]:
    """Writes `out_dir/NAME.ort` and `NAME.required_operators.config` (the reduced-ops config
    for `build.sh --include_ops_by_config`). The converter creates ORT sessions itself, which is
    why this lives in runtime/."""
    from onnxruntime.tools.convert_onnx_models_to_ort import (
        OptimizationStyle,
        convert_onnx_models_to_ort,
    )

    with tempfile.TemporaryDirectory(prefix="onnxsmith-ort-") as tmp:
        staged = Path(tmp) / source.name
        shutil.copyfile(source, staged)
        data = source.with_name(source.name + ".data")
        if data.exists():
            shutil.copyfile(data, Path(tmp) / data.name)
        converted = Path(tmp) / "out"
        log = io.StringIO()
        quiet = logging.getLogger("ort_format_model.utils")
        level = quiet.level
        quiet.setLevel(logging.WARNING)  # it logs every file it writes at INFO
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                convert_onnx_models_to_ort(
                    staged, output_dir=converted, optimization_styles=[OptimizationStyle.Fixed]
                )
        except Exception as e:  # the converter raises bare exceptions on unsupported models
            raise SessionError(f"{source}: ORT-format conversion failed ({e})") from e
        finally:
            quiet.setLevel(level)
        ort_file = converted / f"{source.stem}.ort"
        config = converted / f"{source.stem}.required_operators.config"
        if not ort_file.exists():
            raise SessionError(f"{source}: ORT-format conversion produced no .ort file")
        out_dir.mkdir(parents=True, exist_ok=True)
        return (
            Path(shutil.copy2(ort_file, out_dir / ort_file.name)),
            Path(shutil.copy2(config, out_dir / config.name)),
        )
