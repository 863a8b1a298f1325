"""What a benchmark ran on: CPU model, cores, the ISA extensions that decide int8 speed, ORT.

Read from /proc/cpuinfo and /proc/meminfo on Linux; elsewhere the fields fall back to what
`platform` knows and the flags are empty. Nothing here runs a model.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxsmith.runtime.cpu import VNNI_FLAGS, cpu_flags

# The flags that change which kernels ONNX Runtime picks (x86 names from /proc/cpuinfo, then
# the aarch64 ones). VNNI / dot-product instructions are what make int8 MatMul/Conv fast.
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "i8mm",
    "sve",
    "sve2",
    "bf16",
)


@dataclasses.dataclass(frozen=True)
class MachineInfo:
    """The machine a benchmark ran on; `as_dict()` is its JSON form.

    `target` and `node_id` name the Ray cluster node (`--target hw=rpi5`) when it was not this
    host; both are None for a local run.
    """

    cpu_model: str
    logical_cores: int
    physical_cores: int | None
    usable_cores: int  # cores this process may run on (affinity / container limits)
    isa_flags: tuple[str, ...]
    memory_gb: float | None
    load_average: tuple[float, float, float] | None  # other work on the machine while timing
    os: str
    python: str
    numpy: str
    onnxruntime: str
    providers_available: tuple[str, ...]
    target: str | None = None
    node_id: str | None = None

    @property
    def avx2(self) -> bool:
        return "avx2" in self.isa_flags

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.isa_flags

    @property
    def vnni(self) -> bool:
        """int8 dot-product instructions (AVX-VNNI, AVX512-VNNI, AMX or Arm dotprod)."""
        return any(flag in self.isa_flags for flag in VNNI_FLAGS)

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(avx2=self.avx2, avx512=self.avx512, vnni=self.vnni)
        return data


def machine_info() -> MachineInfo:
    """Describes this machine and the onnxruntime build in use."""
    cpuinfo = _read("/proc/cpuinfo")
    flags = cpu_flags()
    logical = os.cpu_count() or 1
    affinity = getattr(os, "sched_getaffinity", None)
    return MachineInfo(
        cpu_model=_field(cpuinfo, "model name", "Model name") or platform.processor() or "unknown",
        logical_cores=logical,
        physical_cores=_physical_cores(cpuinfo),
        usable_cores=len(affinity(0)) if affinity else logical,
        isa_flags=tuple(f for f in ISA_FLAGS if f in flags),
        memory_gb=_memory_gb(),
        load_average=_load_average(),
        os=platform.platform(),
        python=platform.python_version(),
        numpy=np.__version__,
        onnxruntime=ort.__version__,
        providers_available=tuple(ort.get_available_providers()),
    )


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _field(text: str, *keys: str) -> str:
    """The value of the first `key : value` line whose key is one of `keys`."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keys:
            return value.strip()
    return ""


def _physical_cores(cpuinfo: str) -> int | None:
    """Distinct (physical id, core id) pairs; None where /proc/cpuinfo does not list them."""
    cores = set()
    physical = "0"
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            physical = value.strip()
        elif key.strip() == "core id":
            cores.add((physical, value.strip()))
    return len(cores) or None


def _memory_gb() -> float | None:
    total = _field(_read("/proc/meminfo"), "MemTotal").split()
    return round(int(total[0]) / 2**20, 1) if total and total[0].isdigit() else None


def _load_average() -> tuple[float, float, float] | None:
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return None
    return round(one, 2), round(five, 2), round(fifteen, 2)
