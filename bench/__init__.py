"""Benchmark scripts; each prints its figures and records them in BENCHMARKS.md."""
