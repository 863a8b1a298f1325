"""What the CPU's int8 kernels can do: decides 7-bit weights for static int8 on x86 without VNNI."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
_X86 = ("x86_64", "amd64", "i386", "i686")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The `flags` of the first CPU in /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
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
    return not any(f in flags for f in _VNNI_FLAGS)
