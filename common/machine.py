"""What CPU a figure was measured on: two machines that both call themselves "AMD EPYC" can differ twofold (one
with AVX-512 and bfloat16 instructions, one without), so a record names the model and the widest vector unit."""

from __future__ import annotations

import platform

# The widest first: bfloat16 matmuls (amx_bf16, avx512_bf16) are what the dream's --dream_bfloat16 path needs.
VECTOR_UNITS = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX-512 BF16"), ("avx512f", "AVX-512"),
                ("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2"))


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first processor's fields of a /proc/cpuinfo text, keys lower-cased."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    return fields


def describe_cpu(fields: dict[str, str]) -> str:
    """'AMD EPYC (family 25, model 1; AVX2)' from /proc/cpuinfo fields; the parts it lacks are left out."""
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown"
    details = []
    if fields.get("cpu family") and fields.get("model"):
        details.append(f"family {fields['cpu family']}, model {fields['model']}")
    flags = set(fields.get("flags", "").split())
    unit = next((label for flag, label in VECTOR_UNITS if flag in flags), None)
    if unit:
        details.append(unit)
    return f"{name} ({'; '.join(details)})" if details else name


def vector_unit(description: str) -> str | None:
    """The widest vector unit a `describe_cpu` text names ('AVX2' of '... (family 25, model 1; AVX2)'), None
    where it names none (records written before the CPU was described said only 'AMD EPYC')."""
    details = description.rpartition("(")[2].rstrip(")").split(";")
    named = {part.strip() for part in details} if "(" in description else set()
    return next((label for _, label in VECTOR_UNITS if label in named), None)


def cpu_description() -> str:
    """This machine's CPU as `describe_cpu` words it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return describe_cpu(parse_cpuinfo(f.read()))
    except OSError:
        return describe_cpu({})
