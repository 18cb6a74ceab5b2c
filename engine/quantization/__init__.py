"""Quantization mechanics shared by the ``quantize.*`` passes (engine/passes/quantize_*.py)."""
