"""Benchmarks: ``make bench`` (throughput, against a floor measured in the same run) and
``make chaos`` (randomised fault trials). Not part of the test suite."""
