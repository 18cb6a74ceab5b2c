"""Hugging Face checkpoints: ``config.json`` + ``*.safetensors`` (+ tokenizer), never pickles.

Loaded with ``trust_remote_code=False``: only architectures that transformers itself defines. A
checkpoint that Shrink restructured (heads removed, layers factorized) also ships
``modeling_shrink.py`` for its users' stock transformers; Shrink never runs that file, it applies
the structure the config records with its own copy of the code.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from engine.errors import ModelFormatUnsafe, ModelFormatUnsupported
from engine.formats.redact import path_free

# modeling_shrink imports torch; it is loaded only where a model is built or saved.
SHRINK_MODULE = "modeling_shrink"
STRUCTURE_KEYS = ("shrink_attention_heads", "shrink_low_rank")  # modeling_shrink's HEADS_KEY, LOW_RANK_KEY

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def find_checkpoint_root(folder: Path) -> Path | None:
    """The folder holding ``config.json``: the archive root or its single top-level folder."""
    if (folder / "config.json").is_file():
        return folder
    candidates = [p.parent for p in folder.glob("*/config.json") if p.is_file()]
    return candidates[0] if len(candidates) == 1 else None


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    """A JSON object from a user's file, or ``ModelFormatUnsupported`` naming the file: invalid
    JSON or UTF-8, nesting deeper than Python's json follows, or any other JSON value."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ModelFormatUnsupported(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(type(value), "null")
        raise ModelFormatUnsupported(f"{what} must hold a JSON object, not {kind}")
    return value


def read_json_object(path: Path) -> dict[str, Any]:
    """A checkpoint's JSON file (config.json, tokenizer_config.json) as an object."""
    return _json_object(path.read_bytes(), path.name)


# sentence-transformers' Pooling config keys, in the order its Pooling module reads them; the
# square-root-of-length mean scales each row, which a cosine ignores, so it compares as the mean.
_POOLING_KEYS = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean"),
)


def sentence_pooling(folder: Path) -> str | None:
    """The pooling ("mean", "cls" or "max") that a sentence-transformers checkpoint declares
    (``modules.json`` naming a Pooling module, and that module's ``config.json``): its users
    compare the pooled embedding, not every token's output. None for any other checkpoint, or a
    pooling these three do not describe (weighted mean, last token, several at once)."""
    try:
        modules = json.loads((folder / "modules.json").read_bytes())
        entry = next(m for m in modules if str(m.get("type", "")).endswith(".Pooling"))
        config_path = (folder / str(entry.get("path", "")) / "config.json").resolve()
        if not config_path.is_relative_to(folder.resolve()):
            return None
        config = json.loads(config_path.read_bytes())
    except (OSError, ValueError, RecursionError, TypeError, AttributeError, StopIteration):
        return None
    if not isinstance(config, dict):
        return None
    modes = {name for key, name in _POOLING_KEYS if config.get(key) is True}
    if len(modes) != 1 or any(config.get(k) is True for k in ("pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")):
        return None
    return modes.pop()


def safetensors_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ModelFormatUnsupported(f"{path.name} is not a safetensors file")
        (length,) = struct.unpack("<Q", raw)
        if length > 100 * 1024**2:
            raise ModelFormatUnsupported(f"{path.name} has an implausible safetensors header")
        return _json_object(fh.read(length), f"the header of {path.name}")


def count_params(folder: Path) -> int:
    total = 0
    for file in folder.glob("*.safetensors"):
        for name, info in safetensors_header(file).items():
            if name == "__metadata__":
                continue
            shape = info.get("shape") if isinstance(info, dict) else None
            if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
                raise ModelFormatUnsupported(f"tensor {name!r} in {file.name} has no valid shape")
            n = 1
            for d in shape:
                n *= d
            total += n
    return total


def input_names(folder: Path) -> list[str]:
    config = folder / "tokenizer_config.json"
    if config.is_file():
        names = read_json_object(config).get("model_input_names")
        if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
            return list(names)
    names = ["input_ids", "attention_mask"]
    type_vocab_size = read_json_object(folder / "config.json").get("type_vocab_size", 0)
    if isinstance(type_vocab_size, int) and type_vocab_size > 0:
        names.append("token_type_ids")
    return names


def inspect_hf(folder: Path) -> dict[str, Any]:
    if not list(folder.glob("*.safetensors")):
        if list(folder.glob("*.bin")) or list(folder.glob("*.pt")) or list(folder.glob("*.pth")):
            raise ModelFormatUnsafe(
                "this checkpoint stores its weights as pickles (*.bin), which can run code when loaded; "
                "re-save it with model.save_pretrained(dir, safe_serialization=True) and upload config.json "
                "with the *.safetensors files, or export it to ONNX",
            )
        raise ModelFormatUnsupported("the archive has config.json but no *.safetensors weights")
    config = read_json_object(folder / "config.json")
    if "auto_map" in config and not _is_shrink_auto_map(config):
        raise ModelFormatUnsafe(
            "this checkpoint needs custom code (auto_map in config.json), which Shrink never runs; "
            "export the model to ONNX and upload the .onnx"
        )
    from transformers import AutoConfig

    try:
        hf_config = AutoConfig.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True)
    except Exception as exc:
        # transformers' messages name the checkpoint's folder, a path in the sandbox
        raise ModelFormatUnsupported(
            f"transformers does not know this architecture ({config.get('model_type')!r}): "
            f"{path_free(exc, 'the uploaded checkpoint')}; export the model to ONNX instead"
        ) from None
    return {
        "format": "hf",
        "model_type": hf_config.model_type,
        "architectures": list(getattr(hf_config, "architectures", None) or []),
        "inputs": [{"name": n, "shape": ["batch", "sequence"], "dtype": "int64"} for n in input_names(folder)],
        "outputs": [],
        "params": count_params(folder),
        "has_tokenizer": any((folder / f).is_file() for f in TOKENIZER_FILES),
        "hidden_size": getattr(hf_config, "hidden_size", None),
        "num_hidden_layers": getattr(hf_config, "num_hidden_layers", None),
        "num_attention_heads": getattr(hf_config, "num_attention_heads", None),
    }


def load_model(folder: Path, *, task_head: bool = False) -> Any:
    """The checkpoint as a PyTorch module, in eval mode. Weights come only from safetensors."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True)
    arch = (config.architectures or [None])[0]
    cls = getattr(transformers, arch, None) if (task_head and arch) else None
    cls = cls or transformers.AutoModel
    if any(getattr(config, key, None) for key in STRUCTURE_KEYS):
        return _load_restructured(cls, config, folder)
    model = cls.from_pretrained(
        str(folder), trust_remote_code=False, local_files_only=True, use_safetensors=True
    )
    model.eval()
    return model


def _is_shrink_auto_map(config: dict[str, Any]) -> bool:
    """Our own restructured output: its auto_map names only modeling_shrink classes and the config
    records the structure, which Shrink rebuilds without the file (never imported from the upload)."""
    auto_map = config.get("auto_map")
    targets = list(auto_map.values()) if isinstance(auto_map, dict) else []
    restructured = any(config.get(key) for key in STRUCTURE_KEYS)
    return restructured and bool(targets) and all(str(t).startswith(f"{SHRINK_MODULE}.") for t in targets)


def _load_restructured(cls: Any, config: Any, folder: Path) -> Any:
    """A checkpoint whose structure transformers cannot express (see ``modeling_shrink``): the
    model is built from its config, the recorded structure applied, and every weight loaded
    strictly from safetensors."""
    from safetensors.torch import load_file

    from engine.formats import modeling_shrink

    if hasattr(config, "auto_map"):  # the checkpoint's own code is never what builds the model here
        delattr(config, "auto_map")
    model = cls._from_config(config) if hasattr(cls, "_from_config") else cls.from_config(config)
    modeling_shrink.restructure(model, config)
    state: dict[str, Any] = {}
    for file in sorted(folder.glob("*.safetensors")):
        state.update(load_file(str(file)))
    for key in modeling_shrink.guard_keys(config):
        if key in state and state[key].numel() == 0:
            del state[key]
    missing, unexpected = model.load_state_dict(state, strict=False)
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded = {id(params[k]) for k in state if k in params}
    # Tied weights are saved once; a missing key whose tensor was loaded under its other name is
    # fine, and so are non-persistent buffers. Anything else is damage.
    missing = [k for k in missing if k in params and id(params[k]) not in loaded]
    if missing or unexpected:
        raise ModelFormatUnsupported(
            "this checkpoint does not match the structure its config records",
            detail={"missing": missing[:10], "unexpected": unexpected[:10]},
        )
    model.eval()
    return model


def load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False, local_files_only=True)


def save_model(model: Any, dest: Path, *, tokenizer_from: Path | None = None) -> Path:
    """Save as config + safetensors (never a pickle), copying the tokenizer files along."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dest), safe_serialization=True)
    _write_guards(dest, model.config)
    _ship_model_code(dest)
    if tokenizer_from is not None:
        for name in TOKENIZER_FILES:
            src = tokenizer_from / name
            if src.is_file():
                shutil.copy2(src, dest / name)
    return dest


_GUARD_SHARD = "model-shrink-guards.safetensors"


def _write_guards(folder: Path, config: Any) -> None:
    """An empty tensor under each factorized layer's original weight name
    (``modeling_shrink.guard_keys``): a load without the checkpoint's code then fails loudly."""
    import torch
    from safetensors.torch import load_file, save_file

    from engine.formats import modeling_shrink

    keys = modeling_shrink.guard_keys(config)
    if not keys:
        return
    guards = {key: torch.zeros(0) for key in keys}
    index = folder / "model.safetensors.index.json"
    if index.is_file():  # sharded: one more shard, named in the index
        save_file(guards, str(folder / _GUARD_SHARD), metadata={"format": "pt"})
        data = json.loads(index.read_text())
        data["weight_map"].update(dict.fromkeys(keys, _GUARD_SHARD))
        index.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return
    single = folder / "model.safetensors"
    save_file({**load_file(str(single)), **guards}, str(single), metadata={"format": "pt"})


# Auto classes a restructured checkpoint maps to its modeling_shrink classes (when transformers has
# a class of this model type for them).
_AUTO_CLASSES = {
    "AutoModel": "MODEL_MAPPING_NAMES",
    "AutoModelForSequenceClassification": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    "AutoModelForTokenClassification": "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
    "AutoModelForQuestionAnswering": "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",
    "AutoModelForMaskedLM": "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
    "AutoModelForMultipleChoice": "MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES",
}


def _ship_model_code(folder: Path) -> None:
    """Make a restructured checkpoint load in stock transformers (``trust_remote_code=True``):
    write ``modeling_shrink.py`` beside it and point ``auto_map`` at its classes. A checkpoint
    with no recorded structure is left a plain one (no code, no auto_map)."""
    import transformers
    from transformers.models.auto import modeling_auto

    from engine.formats import modeling_shrink

    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    code_path = folder / f"{SHRINK_MODULE}.py"
    config.pop("auto_map", None)
    code_path.unlink(missing_ok=True)
    if any(config.get(key) for key in STRUCTURE_KEYS):
        auto_map: dict[str, str] = {}
        bases: list[str] = []
        for auto_class, mapping in _AUTO_CLASSES.items():
            base = getattr(modeling_auto, mapping).get(config.get("model_type"))
            if isinstance(base, str) and hasattr(transformers, base):
                auto_map[auto_class] = f"{SHRINK_MODULE}.Shrink{base}"
                bases.append(base)
        if auto_map:
            classes = "".join(f'Shrink{b} = shrink_class("{b}")\n' for b in dict.fromkeys(bases))
            code_path.write_text(Path(modeling_shrink.__file__).read_text() + "\n\n" + classes)
            config["auto_map"] = auto_map
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
