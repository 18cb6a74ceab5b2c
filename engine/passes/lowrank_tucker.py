"""Tucker-2 decomposition of convolutions: kxk conv -> 1x1 -> smaller kxk -> 1x1 (tensorly)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from engine.context import PassContext
from engine.errors import PassNotApplicable
from engine.model import ModelFile
from engine.registry import Pass, PassConfig


class TuckerConfig(PassConfig):
    rank_rule: Literal["ratio", "energy"] = Field(
        "ratio",
        description="ratio: keep rank_ratio of the input and output channels; energy: per mode, the smallest rank holding `energy` of the unfolding's squared singular values",
    )
    rank_ratio: float = Field(
        0.5, ge=0.05, le=0.95, description="share of channels kept on each of the two modes"
    )
    energy: float = Field(
        0.9, ge=0.5, le=0.9999, description="energy rule: share of squared singular values kept"
    )
    min_channels: int = Field(
        8, ge=1, le=4096, description="convolutions with fewer input or output channels stay"
    )
    exclude: list[str] = Field(
        default_factory=list, description="regular expressions on layer names kept dense"
    )


class LowRankTucker(Pass):
    op = "lowrank"
    method = "tucker"
    config_type = TuckerConfig
    summary = "Tucker-2 of convolutions into 1x1 -> kxk -> 1x1 (tensorly partial_tucker)"
    accepts = ("onnx", "hf")
    devices = ("cpu", "cuda")

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        from engine.formats.torch_model import load_torch, save_torch
        from engine.lowrank import conv_decomp, structure

        cfg: TuckerConfig = self.config  # type: ignore[assignment]
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
            if cfg.rank_rule == "energy":
                weight = conv.weight.detach().double().cpu().numpy()
                rank_out = conv_decomp.mode_energy_rank(weight, 0, cfg.energy)
                rank_in = conv_decomp.mode_energy_rank(weight, 1, cfg.energy)
            else:
                rank_out = max(1, round(conv.out_channels * cfg.rank_ratio))
                rank_in = max(1, round(conv.in_channels * cfg.rank_ratio))
            params = conv_decomp.tucker2_params(conv, rank_in, rank_out)
            dense = conv_decomp.dense_params(conv)
            if params >= dense:
                continue  # would not save anything
            structure.set_submodule(tm.module, name, conv_decomp.tucker2(conv, rank_in, rank_out))
            structure.record(
                tm.module, name, {"kind": "tucker2", "rank_in": rank_in, "rank_out": rank_out}
            )
            layers.append(
                {
                    "layer": name,
                    "rank_in": rank_in,
                    "rank_out": rank_out,
                    "params": params,
                    "dense_params": dense,
                }
            )
            ctx.progress((index + 1) / len(convs), f"tucker-2 {name}")
        if not layers:
            raise PassNotApplicable(
                "no convolution where Tucker-2 saves parameters (kxk, ungrouped, min_channels)"
            )
        ctx.resolved["ranks"] = {
            layer["layer"]: [layer["rank_in"], layer["rank_out"]] for layer in layers
        }
        ctx.add_report_section("lowrank_tucker", {"layers": layers})
        return save_torch(tm, ctx.work_dir)
