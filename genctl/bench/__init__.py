"""Benchmarks: backends side by side in one run, with speedups vs torch eager."""
from genctl.bench.runner import BenchResult, parse_backends, run_bench

__all__ = ["BenchResult", "parse_backends", "run_bench"]
