"""CP decomposition of convolutions: kxk conv -> 1x1, depthwise kx1, depthwise 1xk, 1x1."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from engine.lowrank.conv_pass import ConvDecompositionPass
from engine.registry import PassConfig


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


class LowRankCP(ConvDecompositionPass):
    op = "lowrank"
    method = "cp"
    config_type = CPConfig
    summary = "CP decomposition of convolutions into 1x1 -> depthwise kx1 -> depthwise 1xk -> 1x1 (tensorly parafac)"
    accepts = ("onnx", "hf")
    devices = ("cpu", "cuda")
    section = "cp"

    def ranks(self, conv: Any) -> tuple[Any, int]:
        from engine.lowrank import conv_decomp

        rank = conv_decomp.cp_rank_for(conv, self.config.param_ratio)  # type: ignore[attr-defined]
        return rank, conv_decomp.cp_params(conv, rank)

    def decompose(self, conv: Any, ranks: Any) -> tuple[Any, dict[str, Any]]:
        from engine.lowrank import conv_decomp

        return conv_decomp.cp(conv, ranks), {"kind": "cp", "rank": ranks}
