"""Quantizing convolutional models: the default against the original and against the recipes it
replaces, measured side by side by the job's benchmark in one run.

    .venv/bin/python -m bench.quantize_cnn [--budget 6] [--threads 0] [--skip-resnet]

Models:
- the digits CNN (ONNX, trained on sklearn's load_digits by ``bench.materials``): accuracy on the
  450 test images; calibration on training images;
- a ResNet-18-shaped CNN at 224x224 (torch, random weights in eval mode, exported to ONNX):
  top-1 agreement and output cosine to the original on generated images (with random weights
  top-1 agreement alone says little: the cosine of the logits is the stricter check);
  calibration on other generated images.

Candidates, each produced by the real pass (``engine.registry.build_step``):
- ``{"op": "quantize"}``: the default (``quantize.auto``);
- dynamic int8 per-channel: what the default did on convolutional models before (ConvInteger);
- static QDQ per-channel, every layer: int8 whatever the speed.

Every model is timed interleaved with the original (``engine.bench.report.benchmark_models``) at
batch 1 and 8; read a speedup with its interval. The CPU model and its flags are printed first.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench import materials
from bench.steps import latency_cells, report_rows, run_step
from engine import hardware
from engine.bench.config import BenchmarkConfig
from engine.bench.report import CandidateInput, benchmark_models
from engine.data import Dataset
from engine.model import ModelFile

RECIPES: list[tuple[str, dict[str, Any]]] = [
    ("DEFAULT {op: quantize}", {"op": "quantize"}),
    ("dynamic int8 per-channel (old default)", {"op": "quantize", "method": "dynamic", "per_channel": True}),
    ("static QDQ per-channel, all layers", {"op": "quantize", "method": "static", "per_channel": True}),
]


def resnet18_onnx(dest: Path) -> Path:
    """ResNet-18's shape (basic blocks [2, 2, 2, 2], 64-512 channels, 1000 classes), built here:
    torchvision is not a dependency."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.down = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else nn.Identity()
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.down(x))

    torch.manual_seed(0)
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
    ]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    model = nn.Sequential(*layers).eval()
    torch.onnx.export(
        model, (torch.randn(1, 3, 224, 224),), str(dest), input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
    )
    return dest


def table(title: str, report: dict[str, Any], names: list[str], quality: str) -> None:
    print(f"\n{title}")
    head = (
        f"{'model':<40} {'size kB':>8} {'b1 p50 ms':>9} {'b1 speedup [95% CI]':>22} "
        f"{'b8 p50 ms':>9} {'b8 speedup [95% CI]':>22} {quality:>10} {'cos mean':>9} {'cos min':>8}"
    )
    print(head)
    print("-" * len(head))
    for name, m, ratios in report_rows(report, names):
        cells = [f"{name:<40}", f"{m['size_bytes'] / 1024:>8.0f}", *latency_cells(m, ratios)]
        if quality == "accuracy":
            value = m.get("quality", {}).get("accuracy")
        else:
            value = m.get("fidelity", {}).get("top1_agreement", 1.0 if ratios is None else None)
        cells.append(f"{value:>10.4f}" if value is not None else f"{'-':>10}")
        fidelity = m.get("fidelity", {}) if ratios is not None else {"cosine_mean": 1.0, "cosine_min": 1.0}
        for key, width in (("cosine_mean", 9), ("cosine_min", 8)):
            cells.append(f"{fidelity[key]:>{width}.4f}" if key in fidelity else f"{'-':>{width}}")
        print(" ".join(cells))


def run_model(
    title: str, model: ModelFile, calibration: Dataset, evaluation: Dataset, quality: str, args: argparse.Namespace, work: Path
) -> None:
    names, candidates = [], []
    for name, step in RECIPES:
        out, ctx, seconds = run_step(step, model, calibration, work / name.split()[0].lower())
        resolved = ctx.resolved
        note = f"{seconds:.1f} s"
        if "variant" in resolved:
            note += f"; delivered {resolved['variant']}: {resolved['reason']}"
        print(f"  {name}: {note}")
        names.append(name)
        candidates.append(CandidateInput(name, out))
    config = BenchmarkConfig.model_validate(
        {
            "batch_sizes": [1, 8],
            "threads": args.threads,
            "measure_memory": False,
            "time_budget_seconds": args.budget,
            "fidelity_rows": 64,
        }
    )
    report = benchmark_models(model, candidates, dataset=evaluation, config=config)
    table(title, report, names, quality)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=6.0, help="seconds of timing per model and batch size")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    parser.add_argument("--skip-resnet", action="store_true", help="the digits CNN only")
    args = parser.parse_args()

    cpu = hardware.cpu_info()
    print(f"CPU: {cpu['cpu']}; flags: {', '.join(cpu['cpu_flags'])}; {datetime.now(UTC):%Y-%m-%d}")
    with tempfile.TemporaryDirectory(prefix="shrink-bench-cnn-") as tmp:
        work = Path(tmp)
        x_train, x_test, y_train, y_test = materials.digits()
        digits = ModelFile(materials.digits_cnn_onnx(), "onnx")
        run_model(
            "digits CNN (ONNX), accuracy on 450 test images",
            digits,
            Dataset("npz", arrays={"image": x_train[:256]}, labels=y_train[:256]),
            Dataset("npz", arrays={"image": x_test}, labels=y_test),
            "accuracy",
            args,
            work / "digits",
        )
        if not args.skip_resnet:
            rng = np.random.default_rng(0)
            images = rng.standard_normal((96, 3, 224, 224)).astype(np.float32)
            resnet = ModelFile(resnet18_onnx(work / "resnet18.onnx"), "onnx")
            run_model(
                "ResNet-18-shaped CNN at 224x224 (random weights), top-1 agreement with the original",
                resnet,
                Dataset("npz", arrays={"image": images[:32]}),
                Dataset("npz", arrays={"image": images[32:]}),
                "top-1 agr",
                args,
                work / "resnet",
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
