"""Attention fusion on every common way a transformer is exported (engine/quantization/sdpa_rewrite.py
and attention_fusion.py), on one tiny BERT exported each way with torch alone: eager attention
through the TorchScript exporter (Shrink's own export), transformers' default SDPA through it, SDPA
through the dynamo exporter, and SDPA without an explicit scale (transformers 4.x, which is what
``optimum-cli export onnx`` traces: the scale is computed from the head size at run time)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.context import PassContext
from engine.formats import onnx_model, torch_bridge
from engine.model import ModelFile
from engine.quantization import attention_fusion, sdpa_rewrite
from engine.registry import build_step
from tests.engine.bert_support import ops, outputs, padded_feeds

HIDDEN, HEADS, LAYERS, SEQ = 32, 4, 2, 12
KINDS = ("eager", "sdpa", "sdpa-dynamo", "sdpa-computed-scale")


def _model(**extra):
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=200, hidden_size=HIDDEN, num_attention_heads=HEADS, num_hidden_layers=LAYERS,
        intermediate_size=64, max_position_embeddings=64, **extra,
    )  # fmt: skip
    model = BertModel(config).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            # BERT's initial 0.02 leaves attention almost uniform: a wrong scale or mask would
            # move the outputs too little for the comparisons below to see it.
            torch.nn.init.normal_(module.weight, std=0.25)
    return model, config


def _export(model, config, folder: Path, kind: str) -> Path:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    attention = "eager" if kind == "eager" else "sdpa"
    dest = folder / f"{kind}.onnx"
    if kind != "sdpa-computed-scale":
        return torch_bridge.export_hf_onnx(model, folder, dest, seq_len=SEQ, attention=attention, dynamo=kind == "sdpa-dynamo")
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def without_scale(*args, scale=None, **kwargs):  # transformers 4.x's call (its scale is the default)
        return sdpa(*args, **kwargs)

    torch.nn.functional.scaled_dot_product_attention = without_scale
    try:
        return torch_bridge.export_hf_onnx(model, folder, dest, seq_len=SEQ, attention=attention)
    finally:
        torch.nn.functional.scaled_dot_product_attention = sdpa


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    model, config = _model()
    folder = tmp_path_factory.mktemp("bert")
    return {kind: _export(model, config, folder, kind) for kind in KINDS}


def test_the_exports_spell_attention_differently(exports: dict[str, Path]) -> None:
    """What the rewrite has to match: SDPA's NaN guard and split scale, dynamo's K transpose
    through reshapes, a scale computed from the shape; eager divides the scores."""
    spelled = {kind: ops(path) for kind, path in exports.items()}
    assert "IsNaN" not in spelled["eager"] and "Div" in spelled["eager"]
    assert spelled["sdpa"].count("IsNaN") == LAYERS and "Sqrt" not in spelled["sdpa"]
    assert spelled["sdpa-dynamo"].count("IsNaN") == LAYERS
    assert spelled["sdpa-computed-scale"].count("Sqrt") >= 2 * LAYERS


@pytest.mark.parametrize("kind", KINDS)
def test_every_export_fuses_one_attention_per_layer_and_computes_the_same_for_any_mask(
    exports: dict[str, Path], kind: str, tmp_path: Path
) -> None:
    src, feeds = exports[kind], padded_feeds(SEQ)
    attempt = attention_fusion.attempt_fusion(src, tmp_path / "fused.onnx", feeds)
    assert attempt.fusion is not None, attempt.rewrites
    assert attempt.fusion.fused["Attention"] == LAYERS
    fused_ops = ops(attempt.fusion.path)
    assert fused_ops.count("Attention") == LAYERS and "Softmax" not in fused_ops
    for ref, got in zip(outputs(src, feeds), outputs(attempt.fusion.path, feeds), strict=True):
        # Every position, padding included, for right, left and holed masks.
        np.testing.assert_allclose(got, ref, atol=1e-4 * float(np.abs(ref).max()))
    sdpa = attempt.rewrites["sdpa_attention"]
    if kind == "eager":  # onnxruntime's own fusion matches the eager spelling
        assert sdpa["applied"] is False and "not SDPA's spelling" in sdpa["reason"]
    else:
        assert sdpa == {"applied": True, "attention_blocks": LAYERS}
    assert attempt.rewrites["attention_fusion"]["applied"] is True


def test_a_wrong_rewrite_is_refused_by_the_output_check(
    exports: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rewrite that got the scale wrong is discarded: the outputs are compared, not trusted."""
    match = sdpa_rewrite._match

    def doubled(graph, softmax):
        found = match(graph, softmax)
        if not isinstance(found, str):
            found.q.scale *= 2
        return found

    monkeypatch.setattr(sdpa_rewrite, "_match", doubled)
    attempt = attention_fusion.attempt_fusion(exports["sdpa"], tmp_path / "fused.onnx", padded_feeds(SEQ))
    assert attempt.fusion is None and not (tmp_path / "fused.onnx").exists()
    assert attempt.rewrites["sdpa_attention"]["applied"] is True
    assert attempt.rewrites["attention_fusion"] == {
        "applied": False,
        "reason": "the fused graph's outputs differ from the original's on the evaluation inputs",
        "fused": attempt.rewrites["attention_fusion"]["fused"],
    }


def test_a_causal_mask_is_not_rewritten_into_a_padding_mask(tmp_path: Path) -> None:
    """``Attention``'s 2D mask only says which keys are padding; a decoder's causal SDPA mask is
    checked on sample masks and refused before any output is compared."""
    model, config = _model(is_decoder=True, use_cache=False)
    src = _export(model, config, tmp_path / "decoder", "sdpa")
    result = sdpa_rewrite.rewrite(onnx_model.load_proto(src))
    assert result.applied == 0 and result.reason == "the mask is not a key-padding mask (causal, or another pattern)"


def test_the_default_quantizes_the_sdpa_exports_attention_and_says_what_it_rewrote(
    exports: dict[str, Path], tmp_path: Path
) -> None:
    src = ModelFile(exports["sdpa"], "onnx")
    ctx = PassContext(work_dir=tmp_path / "work", original=src)
    ctx.work_dir.mkdir()
    out = build_step({"op": "quantize", "target_cosine": 0.9}).run(src, ctx)
    assert ctx.resolved["fused"]["Attention"] == LAYERS
    assert ctx.resolved["recipe"].startswith("attention fusion")
    assert ops(out.path).count("QAttention") == LAYERS
    rewrites = ctx.resolved["rewrites"]
    assert rewrites["sdpa_attention"] == {"applied": True, "attention_blocks": LAYERS}
    assert rewrites["attention_fusion"] == {"applied": True, "fused": ctx.resolved["fused"]}


def test_an_export_with_static_shapes_fuses(exports: dict[str, Path], tmp_path: Path) -> None:
    """The mask is checked at the sizes the graph's inputs fix (a static export accepts no other)."""
    proto = onnx_model.load_proto(exports["sdpa"])
    feeds = padded_feeds(SEQ)
    for spec in proto.graph.input:
        for dim, size in zip(spec.type.tensor_type.shape.dim, feeds[0][spec.name].shape, strict=True):
            dim.Clear()
            dim.dim_value = size
    src = onnx_model.save_proto(proto, tmp_path / "static.onnx")
    fusion = attention_fusion.fuse_attention(src, tmp_path / "fused.onnx", feeds)
    assert fusion is not None and fusion.fused["Attention"] == LAYERS


def test_a_rewrite_that_fails_leaves_the_graph_to_onnxruntimes_optimizer(
    exports: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(proto):
        proto.graph.node.pop()  # half-done work must not reach the optimizer
        raise ValueError("unforeseen graph")

    monkeypatch.setattr(sdpa_rewrite, "rewrite", broken)
    attempt = attention_fusion.attempt_fusion(exports["eager"], tmp_path / "fused.onnx", padded_feeds(SEQ))
    assert attempt.rewrites["sdpa_attention"] == {"applied": False, "reason": "the rewrite failed: ValueError: unforeseen graph"}
    assert attempt.fusion is not None and attempt.fusion.fused["Attention"] == LAYERS
