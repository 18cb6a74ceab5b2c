"""onnxruntime's Attention fusion before int8 (engine/quantization/attention_fusion.py), on tiny BERTs
built here: it fuses, the fused graph computes the same function for any attention mask, it
follows per-layer head counts, and a fusion that changed the outputs is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.context import PassContext
from engine.formats import modeling_shrink, onnx_model, torch_bridge
from engine.model import ModelFile
from engine.quantization import attention_fusion
from engine.registry import build_step
from tests.engine.bert_support import ops, outputs, padded_feeds

HIDDEN, HEADS, LAYERS, SEQ = 64, 4, 2, 12


def _tiny_bert(folder: Path, heads: list[int] | None = None, attn: str = "eager") -> Path:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=200, hidden_size=HIDDEN, num_attention_heads=HEADS, num_hidden_layers=LAYERS,
        intermediate_size=128, max_position_embeddings=64,
    )  # fmt: skip
    model = BertModel(config).eval()
    if heads:
        modeling_shrink.narrow_attention(model, heads)
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.normal_(module.weight, std=0.05)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    # "sdpa": what a user's own export gets by default.
    return torch_bridge.export_hf_onnx(model, folder, folder / "model.onnx", seq_len=SEQ, attention=attn)


def _session_ops(path: Path, dest: Path) -> list[str]:
    """The op types of the graph a default onnxruntime session runs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(dest)
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return ops(dest)


def test_eager_export_fuses_into_attention_and_computes_the_same_for_any_mask(tmp_path: Path) -> None:
    src = _tiny_bert(tmp_path / "bert")
    feeds = padded_feeds(SEQ)
    fusion = attention_fusion.fuse_attention(src, tmp_path / "fused.onnx", feeds)
    assert fusion is not None and fusion.fused["Attention"] == LAYERS
    assert ops(fusion.path).count("Attention") == LAYERS and "Softmax" not in ops(fusion.path)
    for ref, got in zip(outputs(src, feeds), outputs(fusion.path, feeds), strict=True):
        # Every position, padding included, for right, left and holed masks.
        np.testing.assert_allclose(got, ref, atol=1e-4)


def test_head_pruned_layers_fuse_with_their_own_head_counts(tmp_path: Path) -> None:
    src = _tiny_bert(tmp_path / "bert", heads=[3, 1])
    feeds = padded_feeds(SEQ)
    fusion = attention_fusion.fuse_attention(src, tmp_path / "fused.onnx", feeds)
    assert fusion is not None
    attention = [n for n in onnx_model.load_proto(fusion.path, with_data=False).graph.node if n.op_type == "Attention"]
    counts = [next(a.i for a in n.attribute if a.name == "num_heads") for n in attention]
    assert sorted(counts) == [1, 3]
    for ref, got in zip(outputs(src, feeds), outputs(fusion.path, feeds), strict=True):
        np.testing.assert_allclose(got, ref, atol=1e-4)


def test_a_fusion_that_changes_the_outputs_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The optimizer's own default (one length per row, which assumes right padding) is such a
    fusion: on left-padded and holed masks its outputs differ, and the graph is not used."""
    from onnxruntime.transformers.fusion_options import AttentionMaskFormat

    src = _tiny_bert(tmp_path / "bert")
    monkeypatch.setattr(AttentionMaskFormat, "AttentionMask", AttentionMaskFormat.MaskIndexEnd)
    assert attention_fusion.fuse_attention(src, tmp_path / "fused.onnx", padded_feeds(SEQ)) is None
    assert not (tmp_path / "fused.onnx").exists()
    # On right padding alone, that fusion is exact, so the check really compares outputs.
    assert attention_fusion.fuse_attention(src, tmp_path / "fused.onnx", padded_feeds(SEQ)[:1]) is not None


def test_an_sdpa_export_fuses_too(tmp_path: Path) -> None:
    """transformers' default attention exports a spelling onnxruntime's optimizer does not match;
    engine/quantization/sdpa_rewrite.py matches it (every export kind: tests/engine/test_sdpa_fusion.py)."""
    src = _tiny_bert(tmp_path / "bert", attn="sdpa")
    assert "IsNaN" in ops(src)  # SDPA's export, not the eager pattern
    fusion = attention_fusion.fuse_attention(src, tmp_path / "fused.onnx", padded_feeds(SEQ))
    assert fusion is not None and fusion.fused["Attention"] == LAYERS


def test_a_cnn_is_left_alone(tmp_path: Path) -> None:
    from bench import materials

    cnn = materials.digits_cnn_onnx()
    feeds = [{"image": materials.digits()[1][:4]}]
    assert attention_fusion.fuse_attention(cnn, tmp_path / "fused.onnx", feeds) is None


def test_the_default_quantizes_the_fused_attention(tmp_path: Path) -> None:
    src = ModelFile(_tiny_bert(tmp_path / "bert"), "onnx")
    ctx = PassContext(work_dir=tmp_path / "work", original=src)
    ctx.work_dir.mkdir()
    out = build_step({"op": "quantize", "target_cosine": 0.9}).run(src, ctx)
    assert ctx.resolved["fused"]["Attention"] == LAYERS
    assert ctx.resolved["recipe"].startswith("attention fusion")
    assert ctx.resolved["rewrites"]["attention_fusion"] == {"applied": True, "fused": ctx.resolved["fused"]}
    assert ctx.resolved["rewrites"]["sdpa_attention"]["applied"] is False  # the eager spelling: onnxruntime's own
    assert ops(out.path).count("QAttention") == LAYERS
    # Each feed-forward bias inside its int8 MatMul, not in a BiasGelu (engine/quantization/gelu_bias.py).
    assert ctx.resolved["rewrites"]["gelu_bias"] == {"applied": True, "biases": LAYERS}
    assert "BiasGelu" not in ops(out.path) and ops(out.path).count("Gelu") == LAYERS
    assert "BiasGelu" not in _session_ops(out.path, tmp_path / "optimized.onnx")
    # The fusion's SkipLayerNormalizations (two per layer) run as Sum + LayerNormalization, also
    # after a default session has optimized the graph (engine/quantization/residual_sum.py).
    assert ctx.resolved["residual_sums"] == 2 * LAYERS
    assert "SkipLayerNormalization" not in ops(out.path) and ops(out.path).count("LayerNormalization") == 2 * LAYERS
    assert "SkipLayerNormalization" not in _session_ops(out.path, tmp_path / "optimized.onnx")
    unfused_ctx = PassContext(work_dir=tmp_path / "work2", original=src)
    unfused_ctx.work_dir.mkdir()
    unfused = build_step({"op": "quantize", "target_cosine": 0.9, "fuse_attention": False}).run(src, unfused_ctx)
    assert "fused" not in unfused_ctx.resolved and "QAttention" not in ops(unfused.path)
    assert unfused_ctx.resolved["rewrites"]["attention_fusion"] == {"applied": False, "reason": "fuse_attention is false"}
    assert unfused_ctx.resolved["rewrites"]["gelu_bias"]["applied"] is False  # GELU not fused: no BiasGelu


def test_generated_token_ids_stay_inside_the_vocabulary(tmp_path: Path) -> None:
    """A job without a dataset feeds generated ids; a 200-token vocabulary must not get id 4402
    (onnxruntime refuses an out-of-range Gather), before and after fusion."""
    src = _tiny_bert(tmp_path / "bert")
    fusion = attention_fusion.fuse_attention(src, tmp_path / "fused.onnx", padded_feeds(SEQ))
    assert fusion is not None
    for path in (src, fusion.path):
        inputs, _ = onnx_model.signature(onnx_model.load_proto(path, with_data=False))
        limits = {spec["name"]: spec.get("index_limit") for spec in inputs}
        assert limits["input_ids"] == 200 and limits["token_type_ids"] == 2
        feeds = onnx_model.sample_feeds(inputs, batch=4, seq_len=SEQ)
        assert feeds["input_ids"].min() >= 0 and feeds["input_ids"].max() < 200
        onnx_model.session(path).run(None, feeds)
