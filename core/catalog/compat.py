"""Submit-time check that a dataset can feed a model, from their stored descriptions alone, so a
job never fails late for a mismatch (issue: "a clear 4xx at submit time")."""

from __future__ import annotations

from typing import Any

from core.errors import ValidationFailed


def _mismatch(message: str, **detail: Any) -> ValidationFailed:
    return ValidationFailed(message, code="dataset_mismatch", detail=detail)


def check_dataset_matches_model(dataset_info: dict[str, Any], model_info: dict[str, Any]) -> None:
    if dataset_info.get("has_text"):
        if model_info.get("format") != "hf" or not model_info.get("has_tokenizer"):
            raise _mismatch(
                "a text dataset needs a Hugging Face checkpoint with its tokenizer; for an ONNX model "
                "send an .npz with one array per model input"
            )
        return
    arrays = dataset_info.get("arrays", {})
    expected = {i["name"]: i for i in model_info.get("inputs", [])}
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise _mismatch(
            f"the dataset's arrays must be the model's inputs: missing {missing}, unexpected {extra}",
            missing=missing,
            unexpected=extra,
            model_inputs=sorted(expected),
        )
    for name, spec in expected.items():
        shape, want = arrays[name]["shape"], spec["shape"]
        got_dtype, want_dtype = str(arrays[name].get("dtype", "")), str(spec.get("dtype", ""))
        if want_dtype.startswith(("int", "uint")) and got_dtype.startswith(("float", "bfloat")):
            # Token ids and indices cannot be rounded from floats safely.
            raise _mismatch(
                f"array {name!r} is {got_dtype}; the model input wants integers ({want_dtype})",
                input=name, dataset_dtype=got_dtype, model_dtype=want_dtype,
            )
        if len(shape) != len(want):
            raise _mismatch(
                f"array {name!r} has rank {len(shape)}; the model input has rank {len(want)}",
                input=name, dataset_shape=shape, model_shape=want,
            )
        for axis, (got, exp) in enumerate(zip(shape, want, strict=True)):
            if axis > 0 and isinstance(exp, int) and exp > 0 and got != exp:
                raise _mismatch(
                    f"array {name!r} has dimension {axis} = {got}; the model wants {exp}",
                    input=name, dataset_shape=shape, model_shape=want,
                )
