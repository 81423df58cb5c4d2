"""Helpers shared by the tests and the benchmarks: processes, scenes, invariants, polling."""
