"""Low-rank factorization: rank selection, SVD of linear layers (PyTorch and ONNX initializers),
Tucker-2 and CP of convolutions, and the saved structure that lets a factorized Hugging Face
checkpoint load again."""
