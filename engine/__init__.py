"""Shrink's compression engine.

A library that works on local files and in-memory models. It knows nothing of HTTP, SQL, S3 or
Celery (docs/architecture.md, "Parts"). Importing it is light: torch, onnx and onnxruntime are imported
inside the functions that need them, so the pass registry (and its JSON schemas) can be read
without loading a deep-learning runtime.
"""

__version__ = "0.1.0"
