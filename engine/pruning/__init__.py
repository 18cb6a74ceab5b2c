"""Pruning mechanics behind the ``prune.*`` passes (engine/passes/prune_*.py, which declare the
configs and call ``prune_model`` of ``magnitude``, ``structured`` or ``onnx_initializers``).

- ``options``: the option types the configs share (bounds stated once); light, no torch.
- ``schedule``: the gradual sparsity schedule (Zhu & Gupta) and per-round targets.
- ``magnitude``: unstructured and N:M masks on PyTorch modules (torch.nn.utils.prune).
- ``structured``: channels, neurons and attention heads removed with torch-pruning.
- ``taylor``: first-order Taylor importance on the job's labelled data, for ``structured``.
- ``hf_heads``: head-pruned BERT-style checkpoints, which transformers 5 cannot express alone.
- ``onnx_initializers``: magnitude pruning straight on ONNX weights, no conversion.
- ``measure``: MACs (torch's FlopCounterMode) and parameter counts of in-memory modules.
- ``recovery``: rounds of prune -> fine-tune (engine.training.fit) under a quality bound.
- ``sparse_storage``: what unstructured pruning saved (non-zeros, dense and deflated size).
- ``torch_pass``: the early checks of the PyTorch pruning passes (convertible graph, data).
"""
