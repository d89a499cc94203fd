"""The CPU a record names: model, family and the widest vector unit, from /proc/cpuinfo's text."""

from __future__ import annotations

import os

from common.machine import cpu_description, describe_cpu, parse_cpuinfo, vector_unit
from run.benchmark import run_benchmarks

ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse4_2 avx avx2 fma

processor\t: 1
model name\t: another CPU
"""
ZEN4_FLAGS = "fpu sse4_2 avx avx2 avx512f avx512_vnni avx512_bf16"


def test_two_cpus_with_one_name_are_told_apart_by_family_model_and_vector_unit():
    zen3 = parse_cpuinfo(ZEN3)
    assert zen3["model name"] == "AMD EPYC"  # the first processor's block only
    assert describe_cpu(zen3) == "AMD EPYC (family 25, model 1; AVX2)"
    zen4 = {**zen3, "model": "17", "flags": ZEN4_FLAGS}
    assert describe_cpu(zen4) == "AMD EPYC (family 25, model 17; AVX-512 BF16)"
    assert describe_cpu({"model name": "Some ARM", "flags": "fp asimd"}) == "Some ARM"
    # the results tables read the unit back from a record's text; older records named no unit
    assert [vector_unit(describe_cpu(fields)) for fields in (zen3, zen4)] == ["AVX2", "AVX-512 BF16"]
    assert vector_unit("AMD EPYC") is None and vector_unit("AMD EPYC (family 25, model 1)") is None


def test_this_machine_and_the_benchmark_record_name_the_cpu(tmp_path):
    described = cpu_description()
    assert described and described != "unknown"
    if os.path.exists("/proc/cpuinfo"):
        assert parse_cpuinfo(open("/proc/cpuinfo", encoding="utf-8").read()).get("model name", "") in described
    assert run_benchmarks([], tmp_path)["machine"] == {"cpu": described, "cores": os.cpu_count()}
