"""Tucker-2 decomposition of convolutions: kxk conv -> 1x1 -> smaller kxk -> 1x1 (tensorly)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from engine.lowrank.conv_pass import ConvDecompositionPass, ConvSelection


class TuckerConfig(ConvSelection):
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
        if cfg.rank_rule == "energy":
            weight = conv.weight.detach().double().cpu().numpy()
            rank_out = conv_decomp.mode_energy_rank(weight, 0, cfg.energy)
            rank_in = conv_decomp.mode_energy_rank(weight, 1, cfg.energy)
        else:
            rank_out = max(1, round(conv.out_channels * cfg.rank_ratio))
            rank_in = max(1, round(conv.in_channels * cfg.rank_ratio))
        return [rank_in, rank_out], conv_decomp.tucker2_params(conv, rank_in, rank_out)

    def decompose(self, conv: Any, ranks: Any) -> tuple[Any, dict[str, Any]]:
        from engine.lowrank import conv_decomp

        rank_in, rank_out = ranks
        return conv_decomp.tucker2(conv, rank_in, rank_out), {"kind": "tucker2", "rank_in": rank_in, "rank_out": rank_out}
