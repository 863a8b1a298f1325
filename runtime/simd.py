"""The SIMD width of this CPU in float32 lanes: what channel counts should be multiples of.

ONNX Runtime's CPU convolutions block channels by the vector width (NCHWc with 8 floats on
AVX2, 16 on AVX-512); a channel count that is not a multiple falls off the fast path, which is
why a thinner model can be slower than the original.
"""

from __future__ import annotations

import platform
from pathlib import Path

_CPUINFO = Path("/proc/cpuinfo")


def simd_block(cpuinfo: Path = _CPUINFO) -> tuple[int, str]:
    """(float32 lanes, how it was found): 16 with AVX-512, 8 with AVX/AVX2, 4 otherwise."""
    flags: set[str] = set()
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("flags", "features")):
                flags.update(line.split(":", 1)[-1].split())
    except OSError:
        return 8, f"{cpuinfo} is not readable; assumed AVX2 (8 floats)"
    if "avx512f" in flags:
        return 16, "AVX-512 (avx512f in /proc/cpuinfo): 16 floats per vector"
    if "avx2" in flags or "avx" in flags:
        return 8, "AVX2 (avx2 in /proc/cpuinfo): 8 floats per vector"
    if flags & {"asimd", "neon", "sse2"}:
        return 4, f"128-bit SIMD ({platform.machine()}): 4 floats per vector"
    return 8, "no SIMD flags found; assumed 8 floats per vector"
