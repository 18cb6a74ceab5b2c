"""Low-rank SVD of linear layers: W [m, n] ~ B [m, r] @ A [r, n], one layer becomes two smaller.

ONNX models are rewritten on the graph (MatMul/Gemm weight initializers -> two MatMuls), so any
exported architecture works; Hugging Face checkpoints are factorized in PyTorch and saved with
their structure recorded in config.json (engine.lowrank.structure). Accuracy is usually recovered
by a following ``finetune`` or ``distill`` step in the same recipe.
"""

from __future__ import annotations

from pydantic import Field

from engine.context import PassContext
from engine.lowrank.options import EnergyShare, KeptShare, LayerPatterns, RankRule, Target
from engine.model import ModelFile
from engine.registry import Pass, PassConfig
from engine.training.config import TokensPerRow


class LowRankSVDConfig(PassConfig):
    rank_rule: RankRule = Field(
        "sensitivity",
        description=(
            "sensitivity: per-layer ranks under a parameter budget, spent where the truncation error "
            "falls fastest; uniform: every layer keeps param_ratio of its parameters; energy: each "
            "layer keeps the smallest rank holding `energy` of its squared singular values"
        ),
    )
    param_ratio: KeptShare = Field(
        0.5, description="share of the factorized layers' parameters kept (sensitivity, uniform)"
    )
    energy: EnergyShare = Field(
        0.95, description="share of squared singular values kept (energy rule)"
    )
    target: Target = Field(
        "all",
        description="which layers: all linear layers, or only the MLP expand/contract layers of transformers",
    )
    exclude: LayerPatterns = Field(
        description="regular expressions; layers (module, node or weight names) they match stay dense"
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
    max_length: TokensPerRow = Field(
        64, description="tokens per text row for data_aware calibration"
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
        from engine.lowrank.svd_pass import factorize_model

        cfg = self.config
        return factorize_model(
            model,
            ctx,
            rank_rule=cfg.rank_rule,
            param_ratio=cfg.param_ratio,
            energy=cfg.energy,
            target=cfg.target,
            exclude=cfg.exclude,
            min_features=cfg.min_features,
            data_aware=cfg.data_aware,
            calibration_rows=cfg.calibration_rows,
            max_length=cfg.max_length,
        )
