"""Nonlinear (codebook) quantization: k-means clustering of each weight tensor to 2^bits shared
values (Deep Compression, Han et al. 2016), stored as indices plus a codebook.

Each clustered initializer ``W`` becomes a uint8 index tensor and a float codebook, and the graph
gets ``W = Gather(codebook, Cast(indices, int32))``. The file really is smaller (one byte per
weight instead of four), and it runs in plain onnxruntime: the decode has only constant inputs, so
the runtime folds it once when the session loads. Hence the honest limits: memory and speed at
run time are those of the float model, and below 8 bits the indices still take one byte each on
disk (the zip-compressed size, which the benchmark reports, does shrink with fewer bits).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from engine.context import PassContext
from engine.errors import PassNotApplicable
from engine.formats import onnx_model
from engine.model import ModelFile
from engine.registry import Pass, PassConfig

# Operators whose weight operand is worth clustering, and which input holds it.
_WEIGHT_INPUTS = {"MatMul": 1, "Gemm": 1, "Conv": 1, "ConvTranspose": 1, "Gather": 0}


class CodebookConfig(PassConfig):
    bits: int = Field(8, ge=1, le=8, description="2^bits shared values per tensor; indices are stored as uint8")
    min_elements: int = Field(4096, ge=16, description="tensors smaller than this stay float (biases, norms)")
    kmeans_sample: int = Field(
        20_000, ge=1000, le=10_000_000, description="values per tensor the centroids are fitted on (all are assigned)"
    )


def cluster(values: np.ndarray, bits: int, *, sample: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """1-D k-means with scikit-learn: the codebook (sorted) and each value's index into it."""
    from sklearn.cluster import KMeans

    flat = values.reshape(-1).astype(np.float64)
    k = 1 << bits
    unique = np.unique(flat) if flat.size <= 64 * k else None
    if unique is not None and unique.size <= k:
        codebook = unique
    else:
        rng = np.random.default_rng(seed)
        if flat.size <= sample:
            fit_on = flat
        else:
            # A uniform sample misses the few large weights, which then get clipped to a centroid
            # far inside their range (MiniLM-L6 at 8 bits: cosine 0.964 instead of 0.996); the
            # largest-magnitude values always join the sample.
            tail = np.argpartition(np.abs(flat), flat.size - sample // 20)[-(sample // 20) :]
            fit_on = np.concatenate([rng.choice(flat, size=sample, replace=False), flat[tail]])
        km = KMeans(n_clusters=min(k, np.unique(fit_on).size), n_init=1, random_state=seed, max_iter=100)
        km.fit(fit_on.reshape(-1, 1))
        codebook = np.sort(km.cluster_centers_.reshape(-1))
    # Nearest centroid of every value: the boundaries are the midpoints of the sorted codebook.
    indices = np.searchsorted((codebook[1:] + codebook[:-1]) / 2.0, flat)
    return codebook.astype(values.dtype), indices.astype(np.uint8).reshape(values.shape)


class CodebookQuantize(Pass[CodebookConfig]):
    op = "quantize"
    method = "codebook"
    summary = "k-means codebook: 2^bits shared values per weight tensor, stored as uint8 indices + codebook"
    accepts = ("onnx",)
    devices = ("cpu", "cuda")

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        import onnx
        from onnx import helper, numpy_helper

        cfg = self.config
        proto = onnx_model.load_proto(model.path)
        graph = proto.graph
        # An initializer also listed as a graph input can be overridden by the caller: leave it.
        graph_inputs = {i.name for i in graph.input}
        initializers = {t.name: t for t in graph.initializer if t.name not in graph_inputs}
        targets: list[str] = []
        for node in graph.node:
            slot = _WEIGHT_INPUTS.get(node.op_type)
            if slot is None or len(node.input) <= slot:
                continue
            name = node.input[slot]
            init = initializers.get(name)
            if init is None or init.data_type != onnx.TensorProto.FLOAT or name in targets:
                continue
            if int(np.prod(init.dims)) >= cfg.min_elements:
                targets.append(name)
        if not targets:
            raise PassNotApplicable(
                f"quantize.codebook found no float weight with at least {cfg.min_elements} elements",
                detail={"pass": self.name},
            )
        decode: list[onnx.NodeProto] = []
        for i, name in enumerate(targets):
            ctx.check_cancel()
            ctx.progress(i / len(targets), f"clustering {name}")
            init = initializers[name]
            weight = numpy_helper.to_array(init)
            codebook, indices = cluster(weight, cfg.bits, sample=cfg.kmeans_sample, seed=ctx.seed)
            graph.initializer.remove(init)
            graph.initializer.extend(
                [
                    numpy_helper.from_array(codebook, f"{name}__codebook"),
                    numpy_helper.from_array(indices, f"{name}__indices"),
                ]
            )
            decode += [
                helper.make_node(
                    "Cast", [f"{name}__indices"], [f"{name}__indices_i32"], to=onnx.TensorProto.INT32, name=f"{name}__Cast"
                ),
                helper.make_node("Gather", [f"{name}__codebook", f"{name}__indices_i32"], [name], name=f"{name}__Decode", axis=0),
            ]
        nodes = list(graph.node)
        del graph.node[:]
        graph.node.extend(decode + nodes)
        dest = ctx.work_dir / "model.onnx"
        onnx_model.save_proto(proto, dest)
        ctx.resolved["clustered_tensors"] = len(targets)
        return model.with_path(dest)
