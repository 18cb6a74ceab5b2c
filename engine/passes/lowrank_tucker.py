"""Tucker-2 decomposition of convolutions: kxk conv -> 1x1 -> smaller kxk -> 1x1 (tensorly)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from engine.lowrank.conv_pass import ConvDecompositionPass, ConvSelection
from engine.lowrank.options import EnergyShare, KeptShare, TuckerRankRule


class TuckerConfig(ConvSelection):
    rank_rule: TuckerRankRule = Field(
        "ratio",
        description="ratio: keep rank_ratio of the input and output channels; energy: per mode, the smallest rank holding `energy` of the unfolding's squared singular values",
    )
    rank_ratio: KeptShare = Field(
        0.5, description="share of channels kept on each of the two modes"
    )
    energy: EnergyShare = Field(
        0.9, description="energy rule: share of squared singular values kept"
    )


class LowRankTucker(ConvDecompositionPass[TuckerConfig]):
    op = "lowrank"
    method = "tucker"
    summary = "Tucker-2 of convolutions into 1x1 -> kxk -> 1x1 (tensorly partial_tucker)"
    accepts = ("onnx", "hf")
    devices = ("cpu", "cuda")
    section = "tucker-2"

    def ranks(self, conv: Any) -> tuple[Any, int]:
        from engine.lowrank import conv_decomp

        cfg = self.config
        return conv_decomp.tucker2_ranks(
            conv, cfg.rank_rule, rank_ratio=cfg.rank_ratio, energy=cfg.energy
        )

    def decompose(self, conv: Any, ranks: Any) -> tuple[Any, dict[str, Any]]:
        from engine.lowrank import conv_decomp

        rank_in, rank_out = ranks
        record = {"kind": "tucker2", "rank_in": rank_in, "rank_out": rank_out}
        return conv_decomp.tucker2(conv, rank_in, rank_out), record
