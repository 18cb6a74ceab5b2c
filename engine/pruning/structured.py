"""Structured pruning with torch-pruning: whole filters, channels, neurons and attention heads.

torch-pruning's DependencyGraph finds every layer coupled to a pruned channel (the next layer's
inputs, norms, residual adds) and removes it everywhere in one call, so the model stays
consistent in any architecture it can trace and comes out physically smaller.

Two layouts:
- graphs converted from ONNX (and other plain modules): every conv/linear group is prunable but
  the layers that produce the model's outputs, whose width is the output's shape;
- BERT-style transformers (HF): only attention heads (query/key/value rows of whole heads) and
  FFN neurons (rows of ``intermediate.dense``); the hidden size, which the embeddings, residual
  stream and layer norms share, stays, so the checkpoint keeps its config.

``prune_model`` is what ``prune.structured`` does to a model file: torch-pruning steps in rounds
towards a ratio or a MACs target, fine-tuning between them, the config synced and saved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.context import PassContext
from engine.errors import PassNotApplicable
from engine.model import ModelFile
from engine.pruning.options import Importance
from engine.pruning.recovery import RecoveryOptions

if TYPE_CHECKING:
    from engine.formats.torch_model import TorchModel

# With a MACs target, torch-pruning moves towards ``ratio`` in this many equal increments and
# stops at the first that reaches the target: the resolution of MACs targets (2% of ratio).
MACS_INCREMENTS = 50


@dataclass
class TransformerLayout:
    attention: list[Any]  # modules with query/key/value and num_attention_heads
    ffn: list[Any]  # the FFN expansion layers (intermediate.dense)
    keep: list[Any] = field(default_factory=list)  # every other weight layer: never shrunk


def transformer_layout(module: Any) -> TransformerLayout:
    """Attention and FFN modules of a BERT-style encoder, or PassNotApplicable naming the model."""
    import torch.nn as nn

    attention = [
        m
        for m in module.modules()
        if all(isinstance(getattr(m, n, None), nn.Linear) for n in ("query", "key", "value"))
        and hasattr(m, "num_attention_heads")
        and hasattr(m, "attention_head_size")
    ]
    ffn = [
        m.intermediate.dense
        for m in module.modules()
        if isinstance(getattr(getattr(m, "intermediate", None), "dense", None), nn.Linear)
    ]
    if not attention or len(attention) != len(ffn):
        raise PassNotApplicable(
            f"structured pruning of transformers supports BERT-style encoders (attention.self.query/key/value and "
            f"intermediate.dense, as in BERT, RoBERTa, MiniLM, ELECTRA); {type(module).__name__} has another layout. "
            "prune.magnitude applies to any architecture",
            detail={"architecture": type(module).__name__},
        )
    pruned = {id(m) for a in attention for m in (a.query, a.key, a.value)} | {id(m) for m in ffn}
    keep = [
        m
        for m in module.modules()
        if isinstance(m, nn.Linear | nn.Embedding | nn.LayerNorm) and id(m) not in pruned
    ]
    return TransformerLayout(attention=attention, ffn=ffn, keep=keep)


def output_layers(graph_module: Any) -> list[Any]:
    """Weight layers whose outputs reach the graph's outputs without passing another weight layer.

    Their output width is the model's output shape (the classes, say), so it must not shrink.
    """
    import torch.nn as nn

    weight_types = (nn.Linear, nn.modules.conv._ConvNd)
    graph = getattr(graph_module, "graph", None)
    if graph is None:
        last = [m for m in graph_module.modules() if isinstance(m, weight_types)]
        return last[-1:]
    modules = dict(graph_module.named_modules())
    found: list[Any] = []
    seen: set[str] = set()
    stack = [n for n in graph.nodes if n.op == "output"]
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        if node.op == "call_module" and isinstance(modules.get(node.target), weight_types):
            found.append(modules[node.target])
            continue
        stack.extend(n for n in node.all_input_nodes)
    return found


def importance_criterion(kind: Importance) -> Any:
    import torch_pruning as tp

    if kind == "taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if kind == "l1" else 2)


def _primary_output(out: Any) -> Any:
    if isinstance(out, dict) or hasattr(out, "keys"):
        return out["logits"] if "logits" in out else out["last_hidden_state"]
    return out[0] if isinstance(out, tuple | list) else out


def build_pruner(
    tm: TorchModel,
    *,
    ratio: float,
    head_ratio: float,
    importance: Importance,
    global_pruning: bool,
    round_to: int | None,
    iterative_steps: int,
) -> Any:
    """A torch-pruning BasePruner whose ``step()`` goes ``1/iterative_steps`` of the way each call."""
    import torch_pruning as tp

    feeds = tm.example_feeds(batch=2, seq_len=16)
    device = next(tm.module.parameters()).device
    feeds = {k: v.to(device) for k, v in feeds.items()}
    options: dict[str, Any] = {}
    if tm.kind == "hf":
        layout = transformer_layout(tm.module)
        example: Any = {k: v for k, v in feeds.items() if k in tm.input_names}
        options["ignored_layers"] = layout.keep
        options["num_heads"] = {
            layer: int(a.num_attention_heads)
            for a in layout.attention
            for layer in (a.query, a.key, a.value)
        }
        options["prune_num_heads"] = head_ratio > 0
        # Heads go whole or not at all: a thinner head would change attention_head_size, which the
        # config derives from hidden_size / num_attention_heads.
        options["prune_head_dims"] = False
        options["head_pruning_ratio"] = head_ratio
        # ``ratio`` reaches only the FFN groups: every other layer is ignored, and query/key/value
        # lose whole heads (head_ratio) or nothing. (A ratio of 0 would skip the heads too.)
        options["output_transform"] = _primary_output
    else:
        example = tuple(feeds[n] for n in tm.input_names)
        options["ignored_layers"] = output_layers(tm.module)
        options["output_transform"] = _primary_output
    pruner = tp.pruner.BasePruner(
        tm.module,
        example,
        importance=importance_criterion(importance),
        pruning_ratio=ratio,
        global_pruning=global_pruning,
        iterative_steps=iterative_steps,
        round_to=round_to,
        **options,
    )
    if tm.kind == "hf" and head_ratio > 0:
        heads = min(int(a.num_attention_heads) for a in transformer_layout(tm.module).attention)
        pruner.per_step_head_pruning_ratio = head_step_ratios(heads, head_ratio, iterative_steps)
    return pruner


def head_step_ratios(heads: int, head_ratio: float, steps: int) -> list[float]:
    """Per-step head ratios for torch-pruning that reach ``head_ratio`` of the original heads.

    torch-pruning 1.6.1 removes ``ceil(ratio * current_heads)`` heads per step when pruning
    locally, so its own linear schedule compounds (12 heads, 0.5 in two steps: 12 -> 9 -> 4, not
    6). These ratios name exactly the heads to remove at each step, against the count left.
    """
    removed_by = [
        min(heads - 1, int(heads * head_ratio * k / steps + 0.5)) for k in range(steps + 1)
    ]
    remaining = [heads - n for n in removed_by]
    ratios = [0.0]  # torch-pruning indexes the list by its step counter, which starts at 1
    for before, after in zip(remaining, remaining[1:], strict=False):
        removed = before - after
        # Just under removed/before, so that ceil() gives ``removed`` despite float rounding.
        ratios.append((removed - 0.01) / before if removed > 0 else 0.0)
    return ratios


def sync_attention_config(tm: TorchModel) -> dict[str, Any]:
    """After torch-pruning, make the HF modules and config describe the smaller shapes.

    torch-pruning changes the Linear layers only; BERT's attention reshapes with
    ``num_attention_heads`` / ``all_head_size``, and the config must say the new FFN width and
    head counts, or a reload builds the old shapes.
    """
    from engine.pruning import hf_heads

    layout = transformer_layout(tm.module)
    heads: list[int] = []
    for attention in layout.attention:
        attention.all_head_size = attention.query.out_features
        attention.num_attention_heads = attention.all_head_size // attention.attention_head_size
        heads.append(attention.num_attention_heads)
    widths = sorted({layer.out_features for layer in layout.ffn})
    if len(widths) != 1:
        raise PassNotApplicable(
            "the FFN layers came out with different widths, which a transformers config cannot state; "
            "use global_pruning false for transformers",
            detail={"ffn_widths": widths},
        )
    config = tm.module.config
    config.intermediate_size = widths[0]
    hf_heads.record_heads(config, heads)
    return {"attention_heads": heads, "intermediate_size": widths[0]}


def prune_model(
    model: ModelFile,
    ctx: PassContext,
    options: RecoveryOptions,
    *,
    ratio: float,
    macs_ratio: float | None,
    head_ratio: float,
    importance: Importance,
    global_pruning: bool,
    round_to: int | None,
) -> ModelFile:
    """Prune ``model`` in ``options.steps`` rounds; reports into ``ctx``."""
    from engine.bench.sizes import parameter_counts, size_on_disk
    from engine.formats.torch_model import load_torch, save_torch
    from engine.pruning import measure, taylor
    from engine.pruning.recovery import prune_in_rounds
    from engine.pruning.schedule import linear_fractions

    tm = load_torch(model).trainable()
    tm.module.to(ctx.device)
    before = measure.module_summary(tm)
    # A plain ratio needs one torch-pruning step per round (each step ranks every group: seconds
    # on a transformer); a MACs target needs fine increments to stop close to it.
    increments = MACS_INCREMENTS if macs_ratio is not None else options.steps
    pruner = build_pruner(
        tm,
        ratio=ratio,
        head_ratio=head_ratio,
        importance=importance,
        global_pruning=global_pruning,
        round_to=round_to,
        iterative_steps=increments,
    )
    taylor_data = (
        taylor.taylor_rows(ctx.dataset, options.validation_fraction, ctx.seed)
        if importance == "taylor"
        else None
    )
    fractions = linear_fractions(options.steps)

    def one_increment() -> None:
        if taylor_data is not None:
            taylor.accumulate_gradients(tm, ctx, taylor_data, options)
        pruner.step()
        if taylor_data is not None:
            tm.module.zero_grad(set_to_none=True)

    def prune_round(index: int) -> dict[str, Any]:
        # Each round goes an equal share of the way: of the ratio (one torch-pruning step), or of
        # the MACs to remove (as many increments as that takes).
        if macs_ratio is None:
            one_increment()
        else:
            goal_macs = before["macs"] * (1 - (1 - macs_ratio) * fractions[index])
            while pruner.current_step < increments and measure.count_macs(tm) > goal_macs:
                ctx.check_cancel()
                one_increment()
        macs = measure.count_macs(tm)
        shapes = sync_attention_config(tm) if tm.kind == "hf" else {}
        return {
            "ratio": round(ratio * pruner.current_step / increments, 4),
            "head_ratio": round(head_ratio * pruner.current_step / increments, 4),
            "macs": macs,
            "params": measure.parameter_count(tm.module),
            **shapes,
        }

    rounds = prune_in_rounds(tm, ctx, options, prune_round, name="prune")
    if tm.kind == "hf":
        shapes = sync_attention_config(tm)
    after = measure.module_summary(tm)
    tm.module.to("cpu")
    out = save_torch(tm, ctx.work_dir)
    sizes = size_on_disk(out)
    report: dict[str, Any] = {
        "method": "structured",
        "importance": importance,
        "params_before": before["params"],
        "params": after["params"],
        "macs_before": before["macs"],
        "macs": after["macs"],
        "macs_ratio": after["macs"] / before["macs"] if before["macs"] else None,
        "params_ratio": after["params"] / before["params"] if before["params"] else None,
        "nonzero_params": parameter_counts(out)["nonzero_params"],
        "size_bytes": sizes["size_bytes"],
        "compressed_size_bytes": sizes["compressed_size_bytes"],
        **rounds,
    }
    if "macs_sequence_length" in after:
        report["macs_sequence_length"] = after["macs_sequence_length"]
    if tm.kind == "hf":
        report.update(shapes)
    if (
        macs_ratio is not None
        and after["macs"] > before["macs"] * macs_ratio * 1.001
        and not rounds["stopped_early"]
    ):
        report["note"] = f"MACs target not reached: ratio {ratio} is the most each layer may lose"
    ctx.add_report_section("prune", report)
    ctx.resolved.update(
        {
            "macs_ratio_achieved": round(report["macs_ratio"] or 1.0, 4),
            "params": after["params"],
        }
    )
    return out
