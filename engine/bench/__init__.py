"""Benchmarks: every model measured by the same code, on the same inputs, in one process."""
