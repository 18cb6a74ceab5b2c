"""The submit-time check that a dataset can feed a model, from stored descriptions alone."""

from __future__ import annotations

import pytest

from core.catalog.compat import check_dataset_matches_model
from core.errors import ValidationFailed

ONNX_TOKENS = {"format": "onnx", "inputs": [{"name": "input_ids", "shape": ["batch", "sequence"], "dtype": "int64"}]}
ONNX_IMAGE = {"format": "onnx", "inputs": [{"name": "image", "shape": ["batch", 1, 8, 8], "dtype": "float32"}]}


def _arrays(**arrays: tuple[list[int], str]) -> dict:
    return {"arrays": {k: {"shape": s, "dtype": d} for k, (s, d) in arrays.items()}, "has_text": False}


def test_matching_arrays_pass() -> None:
    check_dataset_matches_model(_arrays(input_ids=([2, 8], "int32")), ONNX_TOKENS)
    check_dataset_matches_model(_arrays(image=([10, 1, 8, 8], "float32")), ONNX_IMAGE)


@pytest.mark.parametrize(
    ("dataset", "model", "field"),
    [
        (_arrays(input_ids=([2, 8], "float32")), ONNX_TOKENS, "integers"),
        (_arrays(pixels=([2, 1, 8, 8], "float32")), ONNX_IMAGE, "missing"),
        (_arrays(image=([2, 8, 8], "float32")), ONNX_IMAGE, "rank"),
        (_arrays(image=([2, 1, 9, 9], "float32")), ONNX_IMAGE, "dimension 2"),
        ({"has_text": True}, ONNX_IMAGE, "Hugging Face"),
    ],
    ids=["float-for-token-ids", "wrong-name", "wrong-rank", "wrong-fixed-dim", "text-for-onnx"],
)
def test_mismatches_are_422_dataset_mismatch(dataset: dict, model: dict, field: str) -> None:
    with pytest.raises(ValidationFailed, match=field) as info:
        check_dataset_matches_model(dataset, model)
    assert info.value.code == "dataset_mismatch" and info.value.status == 422


def test_text_dataset_feeds_a_checkpoint_with_tokenizer() -> None:
    check_dataset_matches_model({"has_text": True}, {"format": "hf", "has_tokenizer": True, "inputs": []})
