"""What the convolution decompositions (Tucker-2, CP) share: pick the convolutions, replace each
by its decomposition, record the structure so the model loads again, report the ranks."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import Field

from engine.context import PassContext
from engine.errors import PassNotApplicable
from engine.lowrank.options import LayerPatterns, excluded_by
from engine.model import ModelFile
from engine.registry import Pass, PassConfig


class ConvSelection(PassConfig):
    """Which convolutions a decomposition touches: the options Tucker-2 and CP share."""

    min_channels: int = Field(
        8, ge=1, le=4096, description="convolutions with fewer input or output channels stay"
    )
    exclude: LayerPatterns = Field(description="regular expressions on layer names kept dense")


ConvConfigT = TypeVar("ConvConfigT", bound=ConvSelection)


class ConvDecompositionPass(Pass[ConvConfigT]):
    """Subclasses implement ``decompose``; ``run`` is the same for every method."""

    section: str  # the report section and the progress label

    def ranks(self, conv: Any) -> tuple[Any, int]:
        """The ranks for this convolution, and the parameter count they give."""
        raise NotImplementedError

    def decompose(self, conv: Any, ranks: Any) -> tuple[Any, dict[str, Any]]:
        """The replacement module and the structure record that rebuilds it at load time."""
        raise NotImplementedError

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        from engine.formats import modeling_shrink
        from engine.formats.torch_model import load_torch, save_torch
        from engine.lowrank import conv_decomp, structure

        cfg = self.config
        tm = load_torch(model)
        excluded = excluded_by(cfg.exclude)
        convs = [
            (n, c)
            for n, c in conv_decomp.decomposable_convs(tm.module, cfg.min_channels)
            if not excluded(n)
        ]
        layers = []
        for index, (name, conv) in enumerate(convs):
            ctx.check_cancel()
            dense = conv_decomp.dense_params(conv)
            ranks, params = self.ranks(conv)
            if params < dense:  # decomposing (costly) only where it saves parameters
                module, record = self.decompose(conv, ranks)
                modeling_shrink.set_submodule(tm.module, name, module)
                structure.record(tm.module, name, record)
                layers.append({"layer": name, "ranks": ranks, "params": params, "dense_params": dense})
            ctx.progress((index + 1) / len(convs), f"{self.section} {name}")
        if not layers:
            raise PassNotApplicable(
                f"no convolution where {self.section} saves parameters (kxk, ungrouped, min_channels)"
            )
        ctx.resolved["ranks"] = {layer["layer"]: layer["ranks"] for layer in layers}
        ctx.add_report_section(f"lowrank_{self.method}", {"layers": layers})
        return save_torch(tm, ctx.work_dir)
