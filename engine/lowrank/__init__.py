"""Low-rank factorization behind the ``lowrank.*`` passes (engine/passes/lowrank_*.py, which
declare the configs): rank selection, SVD of linear layers (PyTorch and ONNX initializers, run by
``svd_pass``), Tucker-2 and CP of convolutions (run by ``conv_pass``), the option types the
configs share (``options``), and the saved structure that lets a factorized Hugging Face
checkpoint load again."""
