"""onnxruntime's SkipLayerNormalization against Sum + LayerNormalization, at MiniLM's shapes.

    .venv/bin/python -m bench.residual_sum [--budget 10]

Why ``engine/quantization/residual_sum.py`` exists: the int8 default used to run each residual sum
and normalization as onnxruntime's ``SkipLayerNormalization`` (the transformer optimizer writes
it, and a session fuses ``Add -> Add -> LayerNormalization`` into it at load time). This times
ten of them in a row against the same ten as ``Sum`` (input, skip, bias) + ``LayerNormalization``
(what the rewrite produces), interleaved by the job benchmark's ``measure_interleaved``, with one
thread and with the runtime's default. The outputs are compared first.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.bench.latency import measure_interleaved
from engine.bench.runners import OnnxRunner
from engine.model import ModelFile
from engine.quantization import residual_sum

DEPTH = 10


def _chain(batch: int, seq: int, hidden: int) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes, current = [], "x"
    for i in range(DEPTH):
        out = "y" if i == DEPTH - 1 else f"h{i}"
        nodes.append(
            helper.make_node(
                "SkipLayerNormalization", [current, "skip", "gamma", "beta", "bias"], [out], domain="com.microsoft", epsilon=1e-12
            )
        )
        current = out
    graph = helper.make_graph(
        nodes, "residuals",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [batch, seq, hidden]) for n in ("x", "skip")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, seq, hidden])],
        [numpy_helper.from_array(rng.normal(size=hidden).astype(np.float32), n) for n in ("gamma", "beta", "bias")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=10.0, help="seconds of timing per configuration")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="shrink-residual-sum-"))
    print("| shape | threads | SkipLayerNormalization us | Sum + LayerNormalization us | ratio |")
    print("|---|---|---|---|---|")
    for batch in (1, 8):
        shape = (batch, 64, 384)
        fused = _chain(*shape)
        rewritten = onnx.ModelProto()
        rewritten.CopyFrom(fused)
        assert residual_sum.rewrite(rewritten) == DEPTH
        onnx.save(fused, folder / "skip.onnx")
        onnx.save(rewritten, folder / "sum.onnx")
        rng = np.random.default_rng(1)
        feeds = [{n: rng.normal(size=shape).astype(np.float32) for n in ("x", "skip")} for _ in range(4)]
        for threads in (1, 0):
            runners = [OnnxRunner(ModelFile(folder / f"{n}.onnx", "onnx"), threads=threads) for n in ("skip", "sum")]
            a, b = (r.run(feeds[0])[0] for r in runners)
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
            timing = measure_interleaved(
                runners, feeds, warmup_runs=5, min_runs=30, max_runs=2000,
                time_budget_seconds=args.budget, target_ci_half_width=0.01,
            )  # fmt: skip
            skip, summed = (float(np.median(s)) * 1000 / DEPTH for s in timing.samples)
            print(f"| {shape} | {threads or 'default'} | {skip:.0f} | {summed:.0f} | {skip / summed:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
