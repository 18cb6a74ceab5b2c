"""Benchmark reports as people read them. Pure Python: the API process renders them and must never
import torch or onnx."""

from core.reports.page import render_report_html

__all__ = ["render_report_html"]
