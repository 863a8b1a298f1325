"""What a CPU's kernels can do, from /proc/cpuinfo: int8 saturation and the SIMD width.

The one reader of /proc/cpuinfo's flags; `machine.py` describes the machine with the same set.
`CpuFacts` carries another machine's flags (a cluster node's) to the same decisions.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
from pathlib import Path

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")
_X86 = ("x86_64", "amd64", "i386", "i686")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The `flags` (x86) or `Features` (Arm) of the first CPU in /proc/cpuinfo; empty if none."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def int8_saturates(flags: frozenset[str] | None = None, machine: str | None = None) -> bool:
    """True on x86 CPUs without VNNI, where ORT's u8·s8 kernels sum pairs in int16 (vpmaddubsw)
    and saturate with full 8-bit weights; ORT's own advice there is `reduce_range` (7-bit).

    Unknown x86 CPUs (no /proc/cpuinfo) count as saturating: 7 bits cost a little accuracy,
    saturation can cost a lot.
    """
    machine = (machine or platform.machine()).lower()
    if machine not in _X86:
        return False
    flags = cpu_flags() if flags is None else flags
    return not any(f in flags for f in VNNI_FLAGS)


def simd_block(flags: frozenset[str] | None = None, machine: str | None = None) -> tuple[int, str]:
    """(float32 lanes, how it was found): 16 with AVX-512, 8 with AVX/AVX2, 4 otherwise.

    ONNX Runtime's CPU convolutions block channels by the vector width (NCHWc with 8 floats on
    AVX2, 16 on AVX-512); a channel count that is not a multiple falls off the fast path, which
    is why a thinner model can be slower than the original.
    """
    flags = cpu_flags() if flags is None else flags
    if "avx512f" in flags:
        return 16, "AVX-512 (avx512f in /proc/cpuinfo): 16 floats per vector"
    if "avx2" in flags or "avx" in flags:
        return 8, "AVX2 (avx2 in /proc/cpuinfo): 8 floats per vector"
    if flags & {"asimd", "neon", "sse2"}:
        return 4, f"128-bit SIMD ({machine or platform.machine()}): 4 floats per vector"
    return 8, "no SIMD flags found in /proc/cpuinfo; assumed 8 floats per vector"


BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX-512 / AMX; Arm's BFMMLA


def native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU multiplies bfloat16 in hardware (Zen 4, Cooper Lake and later Xeons,
    Armv8.6); elsewhere bfloat16 math is emulated and slower than float32."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in BF16_FLAGS)


@dataclasses.dataclass(frozen=True)
class CpuFacts:
    """The flags and architecture of the CPU that will run the model (here, or a target node)."""

    flags: frozenset[str]
    machine: str

    @classmethod
    def here(cls) -> CpuFacts:
        return cls(cpu_flags(), platform.machine())

    def int8_saturates(self) -> bool:
        return int8_saturates(self.flags, self.machine)

    def simd_block(self) -> tuple[int, str]:
        return simd_block(self.flags, self.machine)
