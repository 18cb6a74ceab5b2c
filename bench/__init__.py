"""Benchmarks that print ratios measured side by side in one run (``python -m bench.NAME``), and
the material they share with the tests: real models and data built locally (``bench.materials``)
and the service started as processes (``bench.stack``)."""
