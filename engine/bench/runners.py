"""One interface to run a model on a batch, whatever its runtime: what the benchmark times.

- ``OnnxRunner``: onnxruntime on the CPU, or on the GPU through TensorRT's execution provider
  where TensorRT is installed and CUDA's otherwise (``cuda_providers``).
- ``TorchRunner``: a Hugging Face checkpoint in PyTorch.
- ``TorchGraphRunner``: an ONNX graph converted to a PyTorch ``GraphModule`` (onnx2torch, no
  pickle), for ``runtime: torch`` on an ONNX model.

Every runner describes itself (``describe()``): the report records, per model, what really ran
(runtime, version, execution providers, threads), not what was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

import numpy as np

from engine.data import Dataset, onnx_feeds
from engine.errors import ConversionUnsupported, EngineError
from engine.formats import onnx_model
from engine.model import ModelFile


class DeviceUnavailable(EngineError):
    code = "device_unavailable"
    user_error = False


class Runner(Protocol):
    inputs: list[dict[str, Any]]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    def describe(self) -> dict[str, Any]: ...


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def tensorrt_installed() -> bool:
    """TensorRT's runtime library can be loaded: onnxruntime's GPU build lists its TensorRT
    provider either way, and without the library the session falls back with an error log."""
    import ctypes.util

    return ctypes.util.find_library("nvinfer") is not None


def cuda_providers() -> list[str]:
    """The execution providers of a ``cuda`` session, best first: TensorRT's (where onnxruntime
    has it and TensorRT is installed), CUDA's, and the CPU's for any node neither runs."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    gpu = ["TensorrtExecutionProvider"] if "TensorrtExecutionProvider" in available and tensorrt_installed() else []
    return [*gpu, "CUDAExecutionProvider", "CPUExecutionProvider"]


@dataclass
class OnnxRunner:
    model: ModelFile
    threads: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        providers = cuda_providers() if self.device == "cuda" else None
        # Runners are timed side by side: no worker may spin on the next model's cores.
        self.session = onnx_model.session(self.model.path, threads=self.threads, providers=providers, spin_between_runs=False)
        # onnxruntime falls back to the CPU without a word when the CUDA provider cannot load:
        # a "GPU" latency measured on the CPU would be a lie in the report.
        if self.device == "cuda" and "CUDAExecutionProvider" not in self.session.get_providers():
            raise DeviceUnavailable(
                "the CUDA execution provider is not available to onnxruntime on this worker "
                "(install onnxruntime-gpu and a matching CUDA); benchmark on device 'cpu' instead",
                detail={"providers": self.session.get_providers()},
            )
        self.inputs = [
            {"name": i.name, "shape": list(i.shape), "dtype": _ort_dtype(i.type)} for i in self.session.get_inputs()
        ]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.output_names, feeds)

    def describe(self) -> dict[str, Any]:
        import onnxruntime

        return {
            "runtime": "onnxruntime",
            "version": onnxruntime.__version__,
            "device": self.device,
            "providers": self.providers,
            "intra_op_threads": self.threads or "runtime default (one per physical core)",
            "thread_spinning": "during a run only",
        }


def _ort_dtype(type_str: str) -> str:
    mapping = {
        "tensor(float)": "float32",
        "tensor(float16)": "float16",
        "tensor(double)": "float64",
        "tensor(int64)": "int64",
        "tensor(int32)": "int32",
        "tensor(int8)": "int8",
        "tensor(uint8)": "uint8",
        "tensor(bool)": "bool",
    }
    return mapping.get(type_str, "float32")


def _torch_device(device: str) -> Any:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(
            "PyTorch sees no CUDA device on this worker; benchmark on device 'cpu' instead"
        )
    return torch.device(device)


def _torch_description(device: str) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {
        "runtime": "torch",
        "version": torch.__version__,
        "device": device,
        "intra_op_threads": torch.get_num_threads(),
    }
    if device == "cuda":
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


@dataclass
class TorchRunner:
    """A Hugging Face checkpoint (or any module) run with PyTorch under ``inference_mode``."""

    model: ModelFile
    threads: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        import torch

        from engine.formats import hf

        if self.threads:
            torch.set_num_threads(self.threads)
        self.module = hf.load_model(self.model.path, task_head=True).to(_torch_device(self.device))
        self.inputs = [{"name": n, "shape": ["batch", "sequence"], "dtype": "int64"} for n in hf.input_names(self.model.path)]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.module(**{k: torch.from_numpy(v).to(self.device) for k, v in feeds.items()}, return_dict=True)
        first = out["logits"] if "logits" in out else out["last_hidden_state"]
        # .cpu() waits for the device: a CUDA latency includes the copy of the outputs back.
        return [first.float().cpu().numpy()]

    def torch_call(self, feeds: dict[str, np.ndarray]) -> tuple[Any, dict[str, Any]]:
        import torch

        return self.module, {k: torch.from_numpy(v).to(self.device) for k, v in feeds.items()}

    def describe(self) -> dict[str, Any]:
        return _torch_description(self.device)


@dataclass
class TorchGraphRunner:
    """An ONNX model run in PyTorch, converted by onnx2torch (``runtime: torch``)."""

    model: ModelFile
    threads: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        import torch

        from engine.formats import torch_bridge

        if self.threads:
            torch.set_num_threads(self.threads)
        self.module = torch_bridge.onnx_to_torch(self.model.path).to(_torch_device(self.device))
        inputs, _ = onnx_model.signature(onnx_model.load_proto(self.model.path, with_data=False))
        self.inputs = inputs
        # Some graphs convert but fail when run (onnx2torch 1.5.15 on the MiniLM export: a
        # Flatten meets a 1-D tensor). Fail here, with a way out, rather than mid-benchmark.
        try:
            self.run(onnx_model.sample_feeds(inputs, batch=1, seq_len=8))
        except Exception as exc:
            raise ConversionUnsupported(
                f"this ONNX graph converts to PyTorch but does not run there ({type(exc).__name__}: {exc}); "
                "benchmark it with runtime 'onnxruntime'"
            ) from None

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.module(*self._args(feeds))
        outs = out if isinstance(out, (tuple, list)) else [out]
        return [o.float().cpu().numpy() for o in outs]

    def _args(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        import torch

        return [torch.from_numpy(np.ascontiguousarray(feeds[s["name"]])).to(self.device) for s in self.inputs]

    def torch_call(self, feeds: dict[str, np.ndarray]) -> tuple[Any, list[Any]]:
        return self.module, self._args(feeds)

    def describe(self) -> dict[str, Any]:
        return {**_torch_description(self.device), "converted_by": f"onnx2torch {package_version('onnx2torch')}"}


def make_runner(model: ModelFile, *, threads: int = 0, device: str = "cpu", runtime: str | None = None) -> Runner:
    """The runner for a model. ``runtime`` None: the model's own (ONNX in onnxruntime, a
    checkpoint in PyTorch); ``torch`` runs an ONNX model converted to PyTorch."""
    if model.format == "onnx":
        if runtime == "torch":
            return TorchGraphRunner(model, threads=threads, device=device)
        return OnnxRunner(model, threads=threads, device=device)
    return TorchRunner(model, threads=threads, device=device)


def feeds_from_dataset(inputs: list[dict[str, Any]], dataset: Dataset | None, tokenizer_folder: Any = None) -> bool:
    """Whether ``batches`` feeds the dataset's own rows (else it generates inputs, and labels mean
    nothing for them)."""
    if dataset is None or len(dataset) == 0:
        return False
    if dataset.texts is not None:
        return tokenizer_folder is not None
    return bool(dataset.arrays) and all(spec["name"] in dataset.arrays for spec in inputs)


def batches(
    inputs: list[dict[str, Any]],
    *,
    dataset: Dataset | None,
    batch_size: int,
    rows: int,
    sequence_length: int,
    tokenizer_folder: Any = None,
    full_batches: bool = False,
) -> list[dict[str, np.ndarray]]:
    """The same inputs for every model: dataset rows when there are any, else from the signature.

    ``full_batches``: every batch has exactly ``batch_size`` rows, reusing rows when the dataset
    is smaller (what latency needs: a batch of 8 must be timed with 8 rows). Otherwise the first
    ``rows`` rows, once each, the last batch possibly short (what quality needs).
    """
    if feeds_from_dataset(inputs, dataset, tokenizer_folder):
        assert dataset is not None
        n = len(dataset)
        if full_batches:
            count = max(1, rows // batch_size)
            chunks = [np.arange(i * batch_size, (i + 1) * batch_size) % n for i in range(count)]
        else:
            limit = min(rows, n)
            chunks = [np.arange(s, min(s + batch_size, limit)) for s in range(0, limit, batch_size)]
        if dataset.texts is not None:
            from engine.formats import hf

            tokenizer = hf.load_tokenizer(tokenizer_folder)
            out = []
            for chunk in chunks:
                enc = tokenizer(
                    [dataset.texts[i] for i in chunk],
                    padding="max_length",
                    truncation=True,
                    max_length=sequence_length,
                    return_tensors="np",
                )
                out.append({spec["name"]: enc[spec["name"]].astype(np.int64) for spec in inputs if spec["name"] in enc})
            return out
        return [onnx_feeds(dataset, inputs, chunk) for chunk in chunks]
    rng = np.random.default_rng(0)
    count = max(1, rows // batch_size)
    return [
        onnx_model.sample_feeds(inputs, batch=batch_size, seq_len=sequence_length, rng=rng) for _ in range(count)
    ]
