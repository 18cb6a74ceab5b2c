"""Low-rank SVD of linear layers: W [m, n] ~ B [m, r] @ A [r, n], one layer becomes two smaller.

ONNX models are rewritten on the graph (MatMul/Gemm weight initializers -> two MatMuls), so any
exported architecture works; Hugging Face checkpoints are factorized in PyTorch and saved with
their structure recorded in config.json (engine.lowrank.structure). Accuracy is usually recovered
by a following ``finetune`` or ``distill`` step in the same recipe.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from engine.context import PassContext
from engine.errors import PassNotApplicable
from engine.lowrank import ranks as rank_rules
from engine.model import ModelFile
from engine.registry import Pass, PassConfig


class LowRankSVDConfig(PassConfig):
    rank_rule: Literal["sensitivity", "uniform", "energy"] = Field(
        "sensitivity",
        description=(
            "sensitivity: per-layer ranks under a parameter budget, spent where the truncation error "
            "falls fastest; uniform: every layer keeps param_ratio of its parameters; energy: each "
            "layer keeps the smallest rank holding `energy` of its squared singular values"
        ),
    )
    param_ratio: float = Field(
        0.5,
        ge=0.05,
        le=0.95,
        description="share of the factorized layers' parameters kept (sensitivity, uniform)",
    )
    energy: float = Field(
        0.95, ge=0.5, le=0.9999, description="share of squared singular values kept (energy rule)"
    )
    target: Literal["all", "ffn"] = Field(
        "all",
        description="which layers: all linear layers, or only the MLP expand/contract layers of transformers",
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="regular expressions; layers (module, node or weight names) they match stay dense",
    )
    min_features: int = Field(
        32, ge=2, le=65536, description="layers with a side smaller than this stay dense"
    )
    data_aware: bool = Field(
        True,
        description=(
            "PyTorch route (HF checkpoints), when the job has a dataset: truncate W L, L the Cholesky "
            "factor of the layer's input second moment, so ranks and factors minimize the output error "
            "on real inputs (SVD-LLM); otherwise, and for ONNX graphs, the weights alone"
        ),
    )
    calibration_rows: int = Field(
        256, ge=8, le=100_000, description="dataset rows used by data_aware"
    )
    max_length: int = Field(
        64, ge=8, le=4096, description="tokens per text row for data_aware calibration"
    )


class LowRankSVD(Pass[LowRankSVDConfig]):
    op = "lowrank"
    method = "svd"
    summary = (
        "SVD of linear layers (MatMul/Gemm weights) into two thinner layers; ranks by sensitivity"
    )
    accepts = ("onnx", "hf")
    devices = ("cpu", "cuda")
    default_for_op = True

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        cfg = self.config
        if model.format == "onnx":
            layers, dest = self._onnx(model, ctx, cfg)
        else:
            layers, dest = self._torch(model, ctx, cfg)
        dense = sum(layer["dense_params"] for layer in layers)
        kept = sum(layer["params"] for layer in layers)
        summary = {
            "rank_rule": cfg.rank_rule,
            "layers_factorized": len(layers),
            "dense_params": dense,
            "factorized_params": kept,
            "param_ratio": round(kept / dense, 4) if dense else None,
        }
        ctx.resolved.update(
            summary | {"ranks": {layer["layer"]: layer["rank"] for layer in layers}}
        )
        ctx.add_report_section("lowrank_svd", summary | {"layers": layers})
        return dest

    def _choose(
        self, spectra: list[rank_rules.Spectrum], cfg: LowRankSVDConfig
    ) -> dict[str, int | None]:
        from engine.lowrank.linear_svd import choose_ranks

        if not spectra:
            raise PassNotApplicable(
                "no linear layer to factorize (check target, exclude and min_features)",
                detail={"target": cfg.target, "min_features": cfg.min_features},
            )
        return choose_ranks(spectra, cfg.rank_rule, param_ratio=cfg.param_ratio, energy=cfg.energy)

    def _onnx(
        self, model: ModelFile, ctx: PassContext, cfg: LowRankSVDConfig
    ) -> tuple[list[dict[str, Any]], ModelFile]:
        from engine.formats import onnx_model
        from engine.lowrank import onnx_svd

        proto = onnx_model.load_proto(model.path)
        uses = onnx_svd.weight_uses(
            proto, target=cfg.target, exclude=cfg.exclude, min_features=cfg.min_features
        )
        spectra = [onnx_svd.spectrum(u) for u in uses]
        chosen = self._choose(spectra, cfg)
        layers = onnx_svd.factorize(proto, uses, chosen)
        _add_errors(layers, spectra, chosen, key=lambda u: u.name, uses=uses)
        dest = ctx.work_dir / "model.onnx"
        onnx_model.save_proto(proto, dest)
        return layers, model.with_path(dest)

    def _torch(
        self, model: ModelFile, ctx: PassContext, cfg: LowRankSVDConfig
    ) -> tuple[list[dict[str, Any]], ModelFile]:
        from engine.formats.torch_model import load_torch, save_torch
        from engine.lowrank import linear_svd

        tm = load_torch(model)
        found = linear_svd.linear_layers(
            tm.module, target=cfg.target, exclude=cfg.exclude, min_features=cfg.min_features
        )
        whitening = None
        if cfg.data_aware and ctx.dataset is not None and found:
            whitening = linear_svd.input_whitening(
                tm,
                ctx.dataset,
                [n for n, _ in found],
                rows=cfg.calibration_rows,
                max_length=cfg.max_length,
            )
        ctx.resolved["data_aware"] = whitening is not None
        spectra = [
            linear_svd.spectrum(name, layer.weight, (whitening or {}).get(name))
            for name, layer in found
        ]
        chosen = self._choose(spectra, cfg)
        layers = linear_svd.factorize_linears(tm.module, chosen, whitening)
        errors = {
            s.name: rank_rules.relative_error(s.singular_values, chosen[s.name] or 0)
            for s in spectra
        }
        for layer in layers:
            layer["relative_error"] = round(errors[layer["layer"]], 5)
        return layers, save_torch(tm, ctx.work_dir)


def _add_errors(
    layers: list[dict[str, Any]],
    spectra: list[rank_rules.Spectrum],
    chosen: dict[str, int | None],
    *,
    key: Any,
    uses: list[Any],
) -> None:
    by_layer = {}
    for use, s in zip(uses, spectra, strict=True):
        rank = chosen.get(s.name)
        if rank:
            by_layer[use.node.name or key(use)] = rank_rules.relative_error(s.singular_values, rank)
    for layer in layers:
        layer["relative_error"] = round(by_layer.get(layer["layer"], 0.0), 5)
