"""CP decomposition of convolutions: kxk conv -> 1x1, depthwise kx1, depthwise 1xk, 1x1."""

from __future__ import annotations

import re

from pydantic import Field

from engine.context import PassContext
from engine.errors import PassNotApplicable
from engine.model import ModelFile
from engine.registry import Pass, PassConfig


class CPConfig(PassConfig):
    param_ratio: float = Field(
        0.25,
        ge=0.02,
        le=0.9,
        description="share of each convolution's parameters the CP rank keeps",
    )
    min_channels: int = Field(
        8, ge=1, le=4096, description="convolutions with fewer input or output channels stay"
    )
    exclude: list[str] = Field(
        default_factory=list, description="regular expressions on layer names kept dense"
    )


class LowRankCP(Pass):
    op = "lowrank"
    method = "cp"
    config_type = CPConfig
    summary = "CP decomposition of convolutions into 1x1 -> depthwise kx1 -> depthwise 1xk -> 1x1 (tensorly parafac)"
    accepts = ("onnx", "hf")
    devices = ("cpu", "cuda")

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        from engine.formats.torch_model import load_torch, save_torch
        from engine.lowrank import conv_decomp, structure

        cfg: CPConfig = self.config  # type: ignore[assignment]
        tm = load_torch(model)
        patterns = [re.compile(p) for p in cfg.exclude]
        convs = [
            (n, c)
            for n, c in conv_decomp.decomposable_convs(tm.module, cfg.min_channels)
            if not any(p.search(n) for p in patterns)
        ]
        layers = []
        for index, (name, conv) in enumerate(convs):
            ctx.check_cancel()
            rank = conv_decomp.cp_rank_for(conv, cfg.param_ratio)
            structure.set_submodule(tm.module, name, conv_decomp.cp(conv, rank))
            structure.record(tm.module, name, {"kind": "cp", "rank": rank})
            layers.append(
                {
                    "layer": name,
                    "rank": rank,
                    "params": conv_decomp.cp_params(conv, rank),
                    "dense_params": conv_decomp.dense_params(conv),
                }
            )
            ctx.progress((index + 1) / len(convs), f"cp {name}")
        if not layers:
            raise PassNotApplicable(
                "no kxk ungrouped convolution with at least min_channels channels"
            )
        ctx.resolved["ranks"] = {layer["layer"]: layer["rank"] for layer in layers}
        ctx.add_report_section("lowrank_cp", {"layers": layers})
        return save_torch(tm, ctx.work_dir)
