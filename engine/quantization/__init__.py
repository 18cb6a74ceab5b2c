"""Quantization mechanics shared by the ``quantize.*`` passes (engine/passes/quantize_*.py).

- ``options``: config fields several quantize passes offer (reduce_range, per_channel, ...),
  declared once.
- ``onnx_quant``: onnxruntime's pre-processing and dynamic int8 (all of ``quantize.dynamic``),
  the inputs fidelity is measured on, a calibration reader over the job's dataset, HF checkpoints
  exported to ONNX (``as_onnx``).
- ``attention_fusion``: BERT attention fused into onnxruntime's ``Attention`` kernel, kept only
  when it computes the same outputs; ``sdpa_rewrite`` matches the SDPA exports' attention for it.
- ``outlier_split``: the few outlier channels of each MatMul's activation computed in float.
- ``residual_sum``: residual sums as ``Sum`` + ``LayerNormalization``, never onnxruntime's slow
  ``SkipLayerNormalization``.
- ``sensitivity``: each layer's effect on the model's output when it alone is int8.
- ``mixed_precision``: dynamic int8 with the most sensitive layers kept in float until a fidelity
  target is met.
- ``auto``: the default recipe (``{"op": "quantize"}``), all of the above on one in-memory graph.
- ``static``, ``fp16``, ``int4``, ``codebook``, ``torchao``, ``qat``: the mechanics of the other
  methods.
"""
