"""First-order Taylor importance for structured pruning: the job's labelled data ranks channels.

torch-pruning's ``GroupTaylorImportance`` scores a channel from ``|w * dL/dw|`` across its coupled
group, reading the gradients left on the weights; ``accumulate_gradients`` leaves them there,
summed over a few training batches, before each pruning step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.context import PassContext
from engine.errors import DatasetInvalid
from engine.pruning.recovery import RecoveryOptions

if TYPE_CHECKING:
    from engine.data import Dataset
    from engine.formats.torch_model import TorchModel


def taylor_rows(dataset: Dataset | None, validation_fraction: float, seed: int) -> Dataset:
    """The training rows Taylor importance is computed on; refuses data without class labels."""
    if (
        dataset is None
        or dataset.labels is None
        or dataset.labels.dtype.kind not in "iub"
        or dataset.labels.ndim != 1
    ):
        raise DatasetInvalid(
            "importance 'taylor' needs a dataset with integer class labels (its loss gradients rank the "
            "channels); without labels use importance 'l2' or 'l1'"
        )
    return dataset.split(validation_fraction, seed)[0]


def accumulate_gradients(
    tm: TorchModel,
    ctx: PassContext,
    rows: Dataset,
    options: RecoveryOptions,
    *,
    max_batches: int = 8,
) -> None:
    """Leave dL/dw, summed over the first ``max_batches`` shuffled batches of ``rows``, in the
    weights' ``.grad``."""
    import torch.nn.functional as F

    from engine.training import torch_batches

    tm.module.zero_grad(set_to_none=True)
    tm.module.eval()  # importance of the deployed (eval-mode) network
    batches = torch_batches(
        rows,
        tm,
        options.batch_size,
        shuffle=True,
        seed=ctx.seed,
        max_length=options.max_length,
        device=ctx.device,
    )
    for index, (feeds, labels) in enumerate(batches):
        if index >= max_batches:
            break
        logits = tm.forward(feeds)
        if logits.dim() != 2:
            raise DatasetInvalid(
                "importance 'taylor' needs a model that outputs class logits; this one outputs "
                f"a {logits.dim()}-D tensor (embeddings): use importance 'l2' or 'l1'"
            )
        F.cross_entropy(logits.float(), labels.long()).backward()
