"""Turn an uploaded file into a ``ModelFile``: detect the format from the content and refuse
formats whose loaders run code (pickles, ``.pt2`` exported programs, TorchScript)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from engine.errors import ModelFormatUnsafe, ModelFormatUnsupported
from engine.formats import archive, hf, onnx_model
from engine.model import ModelFile

EXPORT_HINT = (
    "export the model to ONNX instead, e.g. torch.onnx.export(model, example_inputs, 'model.onnx', "
    "input_names=[...], output_names=[...], dynamic_axes={...}), and upload the .onnx"
)


def _is_pickle(head: bytes) -> bool:
    # Protocol 2+ pickles start with PROTO; torch.save's legacy format too.
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _refuse_unsafe_members(names: list[str]) -> None:
    lowered = [n.lower() for n in names]
    if any(n.endswith("archive_format") or "serialized_exported_program" in n or n.endswith(".pt2") for n in lowered):
        raise ModelFormatUnsafe(
            "this is a PyTorch exported program (.pt2); torch.export.load unpickles parts of it, so a "
            f"crafted file runs code when loaded. {EXPORT_HINT}"
        )
    if any(n.endswith("/code/") or "/code/__torch__" in n for n in lowered):
        raise ModelFormatUnsafe(f"TorchScript archives are not accepted (they carry code). {EXPORT_HINT}")
    if any(n.endswith((".pkl", ".pickle", ".pt", ".pth", ".ckpt")) for n in lowered):
        raise ModelFormatUnsafe(
            f"the upload contains pickled PyTorch data, which can run code when loaded. {EXPORT_HINT}"
        )


def resolve_upload(path: Path, work_dir: Path) -> ModelFile:
    """Detect the upload's format and lay it out under ``work_dir`` ready to load."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        raise ModelFormatUnsupported("the upload is empty")
    if _is_pickle(head):
        raise ModelFormatUnsafe(f"this is a pickled checkpoint (.pt/.pth/.bin), which can run code when loaded. {EXPORT_HINT}")
    if archive.is_zip(path) or archive.is_tar(path):
        names = archive.member_names(path)
        _refuse_unsafe_members(names)
        folder = archive.unpack(path, work_dir / "unpacked")
        return _resolve_folder(folder)
    if head[:8] != b"\x00" * 8 and head[8:9] == b"{" and b'"dtype"' in head:
        raise ModelFormatUnsupported(
            "a bare .safetensors file has no architecture: upload a zip of config.json, the *.safetensors "
            "and the tokenizer files (a Hugging Face checkpoint folder)"
        )
    target = work_dir / "model.onnx"
    work_dir.mkdir(parents=True, exist_ok=True)
    if path.resolve() != target.resolve():
        shutil.copyfile(path, target)
    onnx_model.load_proto(target, with_data=False)
    return ModelFile(path=target, format="onnx", origin="onnx")


def _resolve_folder(folder: Path) -> ModelFile:
    root = hf.find_checkpoint_root(folder)
    if root is not None:
        return ModelFile(path=root, format="hf", origin="hf")
    onnx_files = [p for p in folder.rglob("*.onnx")]
    if len(onnx_files) == 1:
        return ModelFile(path=onnx_files[0], format="onnx", origin="onnx")
    if len(onnx_files) > 1:
        raise ModelFormatUnsupported(
            "the archive holds several .onnx files; upload one model per archive",
            detail={"files": [p.name for p in onnx_files][:20]},
        )
    if list(folder.rglob("*.bin")):
        raise ModelFormatUnsafe(f"the archive holds pickled weights (*.bin) without config.json. {EXPORT_HINT}")
    raise ModelFormatUnsupported(
        "the archive holds neither an .onnx model nor a Hugging Face checkpoint (config.json + *.safetensors)"
    )


def inspect_model(model: ModelFile) -> dict[str, Any]:
    if model.format == "onnx":
        return onnx_model.inspect_onnx(model.path)
    return hf.inspect_hf(model.path)


def open_model(path: Path, work_dir: Path) -> tuple[ModelFile, dict[str, Any]]:
    """Detect, unpack and inspect an upload: what the API stores about a model."""
    model = resolve_upload(path, work_dir)
    return model, inspect_model(model)
