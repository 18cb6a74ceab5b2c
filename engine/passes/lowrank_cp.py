"""CP decomposition of convolutions: kxk conv -> 1x1, depthwise kx1, depthwise 1xk, 1x1."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from engine.lowrank.conv_pass import ConvDecompositionPass, ConvSelection


class CPConfig(ConvSelection):
    param_ratio: float = Field(
        0.25,
        ge=0.02,
        le=0.9,
        description="share of each convolution's parameters the CP rank keeps",
    )


class LowRankCP(ConvDecompositionPass[CPConfig]):
    op = "lowrank"
    method = "cp"
    summary = "CP decomposition of convolutions into 1x1 -> depthwise kx1 -> depthwise 1xk -> 1x1 (tensorly parafac)"
    accepts = ("onnx", "hf")
    devices = ("cpu", "cuda")
    section = "cp"

    def ranks(self, conv: Any) -> tuple[Any, int]:
        from engine.lowrank import conv_decomp

        rank = conv_decomp.cp_rank_for(conv, self.config.param_ratio)
        return rank, conv_decomp.cp_params(conv, rank)

    def decompose(self, conv: Any, ranks: Any) -> tuple[Any, dict[str, Any]]:
        from engine.lowrank import conv_decomp

        return conv_decomp.cp(conv, ranks), {"kind": "cp", "rank": ranks}
