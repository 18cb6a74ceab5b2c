"""Low-rank passes: rank rules, SVD of ONNX and HF linear layers, Tucker-2 and CP of convolutions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from bench import materials
from engine.context import PassContext
from engine.data import Dataset
from engine.formats import onnx_model, torch_bridge
from engine.formats.torch_model import load_torch
from engine.lowrank import conv_decomp
from engine.lowrank import ranks as rank_rules
from engine.model import ModelFile
from engine.registry import build_step


def ctx_for(tmp_path: Path, original: ModelFile, dataset: Dataset | None = None) -> PassContext:
    work = tmp_path / "work"
    work.mkdir(parents=True, exist_ok=True)
    return PassContext(work_dir=work, original=original, dataset=dataset, seed=0)


def test_energy_rank_keeps_the_requested_share_of_squared_singular_values():
    s = np.array([3.0, 2.0, 1.0, 0.5])  # squares 9, 4, 1, 0.25 of 14.25
    assert rank_rules.energy_rank(s, 0.60) == 1
    assert rank_rules.energy_rank(s, 0.90) == 2
    assert rank_rules.energy_rank(s, 0.99) == 4


def test_sensitivity_gives_rank_to_the_layer_whose_error_falls_slowest_within_the_budget():
    flat = rank_rules.Spectrum("flat", np.ones(64), 64 * 64, 128)  # needs every rank it gets
    steep = rank_rules.Spectrum("steep", 0.5 ** np.arange(64), 64 * 64, 128)  # rank 3 holds ~98%
    ranks = rank_rules.ranks_by_sensitivity([flat, steep], 0.4)
    assert ranks["flat"] is not None and ranks["steep"] is not None
    assert ranks["flat"] > 4 * ranks["steep"]
    spent = 128 * (ranks["flat"] + ranks["steep"])
    assert 0.35 * 2 * 4096 < spent <= 0.4 * 2 * 4096
    # A rank at or past break-even (m*n/(m+n) = 32 here) saves nothing: the layer stays dense.
    assert rank_rules.ranks_by_energy([flat], 0.99) == {"flat": None}


def _mlp_onnx(path: Path) -> Path:
    """Linear layers exported both ways: a 3-D input gives MatMul, a 2-D input Gemm (transB=1)."""
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = torch.nn.Linear(48, 192)
            self.down = torch.nn.Linear(192, 48)
            self.head = torch.nn.Linear(48, 64)

        def forward(self, tokens: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
            x = self.down(torch.relu(self.up(tokens))).mean(1)
            return self.head(x + pooled)

    net = Net().eval()
    with torch.no_grad():
        for layer in (net.up, net.down, net.head):
            # Rank-12 weights plus noise: what trained layers look like, and what SVD should keep.
            rows, cols = layer.weight.shape
            low = torch.randn(rows, 12) @ torch.randn(12, cols) / 12
            layer.weight.copy_(low + 0.01 * torch.randn(rows, cols))
    return torch_bridge.export_onnx(
        net,
        (torch.randn(2, 5, 48), torch.randn(2, 48)),
        path,
        inputs=[
            {"name": "tokens", "shape": ["batch", "sequence", 48], "dtype": "float32"},
            {"name": "pooled", "shape": ["batch", 48], "dtype": "float32"},
        ],
        outputs=[{"name": "out", "shape": ["batch", 64], "dtype": "float32"}],
    )


def _run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    return onnx_model.session(path).run(None, feeds)[0]


def test_onnx_svd_splits_matmul_and_gemm_weights_into_two_matmuls(tmp_path):
    source = ModelFile(_mlp_onnx(tmp_path / "mlp.onnx"), "onnx")
    feeds = {
        "tokens": np.random.default_rng(0).standard_normal((3, 7, 48)).astype(np.float32),
        "pooled": np.random.default_rng(1).standard_normal((3, 48)).astype(np.float32),
    }
    reference = _run(source.path, feeds)

    # Keeping (nearly) all the energy reproduces the model; fewer parameters only if it pays.
    ctx = ctx_for(tmp_path / "exact", source)
    exact = build_step(
        {"op": "lowrank", "method": "svd", "rank_rule": "energy", "energy": 0.9999}
    ).run(source, ctx)
    assert np.abs(_run(exact.path, feeds) - reference).max() < 1e-3 * np.abs(reference).max()

    ctx = ctx_for(tmp_path / "half", source)
    half = build_step({"op": "lowrank", "param_ratio": 0.5, "rank_rule": "uniform"}).run(
        source, ctx
    )
    proto = onnx.load(str(half.path))
    ops = [n.op_type for n in proto.graph.node]
    assert (
        ops.count("MatMul") >= 4
    )  # up, down each split in two; head (Gemm) gets a MatMul before it
    assert ctx.resolved["layers_factorized"] == 3
    assert ctx.resolved["param_ratio"] == pytest.approx(0.5, abs=0.05)
    assert onnx_model.count_params(proto) < onnx_model.count_params(onnx.load(str(source.path)))
    out = _run(half.path, feeds)
    assert out.shape == reference.shape
    cos = (out * reference).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(reference, axis=1)
    assert cos.min() > 0.99  # rank 19-25 >= 12: the dominant structure survives


def test_factorized_hf_checkpoint_reloads_with_its_structure(tmp_path):
    source = ModelFile(materials.minilm_hf_copy(tmp_path / "minilm"), "hf")
    ctx = ctx_for(tmp_path, source)
    out = build_step({"op": "lowrank", "method": "svd", "target": "ffn", "param_ratio": 0.5}).run(
        source, ctx
    )

    assert out.format == "hf"
    assert ctx.resolved["layers_factorized"] == 12  # 6 blocks x (expand, contract)
    assert ctx.resolved["param_ratio"] == pytest.approx(0.5, abs=0.02)
    reloaded = load_torch(out)
    up = reloaded.module.encoder.layer[0].intermediate.dense
    assert (
        isinstance(up, torch.nn.Sequential)
        and up[0].out_features == ctx.resolved["ranks"]["encoder.layer.0.intermediate.dense"]
    )
    original = load_torch(source)
    feeds = original.example_feeds(batch=2, seq_len=12)
    with torch.no_grad():
        a, b = original.forward(feeds), reloaded.forward(feeds)
    assert a.shape == b.shape and not torch.allclose(a, b)  # really factorized
    assert torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1)).min() > 0.3
    # Stock transformers builds the same structure from the modeling_shrink.py the checkpoint ships.
    import transformers

    stock = transformers.AutoModel.from_pretrained(str(out.path), trust_remote_code=True).eval()
    assert type(stock).__name__ == "ShrinkBertModel"
    with torch.no_grad():
        c = stock(**feeds).last_hidden_state
    torch.testing.assert_close(c, b, atol=1e-5, rtol=1e-5)
    # Without the checkpoint's code transformers would build stock Linears and initialise them
    # randomly; the empty tensors under their names make it refuse instead (modeling_shrink.guard_keys).
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        transformers.AutoModel.from_pretrained(str(out.path))


def test_a_sharded_factorized_checkpoint_names_its_guards_in_the_index(tmp_path):
    """Large checkpoints are saved in shards: the empty guard tensors go in a shard of their own,
    listed in the index, and both loaders behave as for one file."""
    import json

    import transformers

    from engine.formats import hf, modeling_shrink

    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_attention_heads=2, num_hidden_layers=2, intermediate_size=64
    )
    setattr(config, modeling_shrink.LOW_RANK_KEY, {"encoder.layer.0.intermediate.dense": {"kind": "linear", "rank": 4}})
    torch.manual_seed(0)
    model = modeling_shrink.restructure(transformers.BertModel(config), config).eval()
    folder = tmp_path / "sharded"
    model.save_pretrained(str(folder), safe_serialization=True, max_shard_size="20KB")
    hf._write_guards(folder, model.config)

    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert index["weight_map"]["encoder.layer.0.intermediate.dense.weight"] == hf._GUARD_SHARD
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        transformers.BertModel.from_pretrained(str(folder))
    reloaded = hf.load_model(folder)
    ids = torch.randint(0, 100, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state)


def _macs(module: torch.nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(x)
    return counter.get_total_flops() // 2


def test_tucker2_and_finetuning_keeps_digits_accuracy_within_a_point_with_fewer_macs(tmp_path):
    x_train, x_test, y_train, y_test = materials.digits()
    teacher = ModelFile(materials.digits_cnn_onnx(), "onnx")
    ctx = ctx_for(tmp_path / "tucker", teacher)
    decomposed = build_step({"op": "lowrank", "method": "tucker"}).run(teacher, ctx)
    assert set(ctx.resolved["ranks"]) == {"3/Conv", "7/Conv"}  # the 1-channel first conv stays

    ctx = ctx_for(
        tmp_path / "finetune", teacher, Dataset("npz", {"image": x_train}, labels=y_train)
    )
    tuned = build_step({"op": "finetune", "epochs": 3}).run(decomposed, ctx)

    def accuracy(model: ModelFile) -> float:
        logits = _run(model.path, {"image": x_test})
        return float((logits.argmax(1) == y_test).mean())

    assert accuracy(tuned) >= accuracy(teacher) - 0.01, (accuracy(teacher), accuracy(tuned))
    image = torch.from_numpy(x_test[:1])
    assert _macs(load_torch(tuned).module, image) < 0.6 * _macs(load_torch(teacher).module, image)


def test_cp_recovers_a_convolution_that_has_low_cp_rank():
    rng = np.random.default_rng(0)
    a, b, c, d = (rng.standard_normal((n, 3)) for n in (16, 12, 3, 3))
    weight = np.einsum("or,ir,hr,wr->oihw", a, b, c, d)
    conv = torch.nn.Conv2d(12, 16, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight))
    cp = conv_decomp.cp(conv, 3)
    x = torch.randn(2, 12, 9, 9)
    with torch.no_grad():
        want, got = conv(x), cp(x)
    assert [type(m).__name__ for m in cp] == ["Conv2d"] * 4 and cp[1].groups == 3
    assert ((want - got).norm() / want.norm()).item() < 1e-3


def test_data_aware_factors_have_lower_output_error_on_anisotropic_inputs():
    from engine.lowrank import linear_svd

    torch.manual_seed(0)
    weight = torch.randn(64, 96, dtype=torch.float64)
    # Inputs that live mostly in a few directions, like MLP activations after GELU.
    x = torch.randn(2000, 96, dtype=torch.float64) * torch.logspace(0, -3, 96, dtype=torch.float64)
    second_moment = x.T @ x / len(x)
    whitening = torch.linalg.cholesky(second_moment + 1e-8 * torch.eye(96, dtype=torch.float64))

    def output_error(b: torch.Tensor, a: torch.Tensor) -> float:
        return ((x @ weight.T - x @ (b @ a).T).norm() / (x @ weight.T).norm()).item()

    plain = output_error(*linear_svd.svd_factors(weight, 16))
    aware = output_error(*linear_svd.svd_factors(weight, 16, whitening))
    assert aware < 0.5 * plain, (aware, plain)
    # At full rank both reproduce the layer exactly.
    assert output_error(*linear_svd.svd_factors(weight, 64, whitening)) < 1e-8
