"""Other libraries' default int8 recipes for an ONNX model, one per process.

    .venv-peers/bin/python -m bench.peer_quantizers PEER SRC DEST [--calibration NPZ]

Run by ``bench.quantize_peers`` in the peers' own venv (``make bench-peers`` builds it), so that
their packages never meet the service's pins. This module imports numpy, onnx and the one peer's
package only (no Shrink module): ``ort`` needs nothing beyond onnxruntime and also runs under the
service's Python. ``--calibration`` is an .npz of token arrays (``input_ids``, ``attention_mask``,
``token_type_ids``, one row per sentence) for the recipes that calibrate; each row is fed as a
batch of one. DEST is written as one .onnx file (weights inside it).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _rows(calibration: Path | None) -> list[dict[str, np.ndarray]]:
    if calibration is None:
        raise SystemExit("this recipe calibrates: pass --calibration NPZ")
    with np.load(calibration) as data:
        arrays = {k: data[k].astype(np.int64) for k in data.files}
    count = len(next(iter(arrays.values())))
    return [{k: v[i : i + 1] for k, v in arrays.items()} for i in range(count)]


def _save(model, dest: Path) -> None:
    import onnx

    onnx.save_model(model, str(dest))


def ort_dynamic(src: Path, dest: Path, calibration: Path | None) -> None:
    """onnxruntime's own dynamic int8, per-channel weights in 7 bits (``reduce_range``)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(src, dest, per_channel=True, reduce_range=True, weight_type=QuantType.QInt8)


def _optimum(src: Path, dest: Path, preset: str) -> None:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    config = getattr(AutoQuantizationConfig, preset)(is_static=False)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        (folder / "model.onnx").symlink_to(src.resolve())
        quantizer = ORTQuantizer.from_pretrained(folder, file_name="model.onnx")
        out = Path(tmp) / "out"
        quantizer.quantize(save_dir=out, quantization_config=config)
        produced = sorted(out.glob("*.onnx"))
        if len(produced) != 1:
            raise RuntimeError(f"optimum wrote {[p.name for p in produced]}, expected one .onnx")
        shutil.move(produced[0], dest)


def optimum_avx2(src: Path, dest: Path, calibration: Path | None) -> None:
    """Optimum ``AutoQuantizationConfig.avx2(is_static=False)`` through ``ORTQuantizer``."""
    _optimum(src, dest, "avx2")


def optimum_avx512_vnni(src: Path, dest: Path, calibration: Path | None) -> None:
    """Optimum ``AutoQuantizationConfig.avx512_vnni(is_static=False)`` through ``ORTQuantizer``."""
    _optimum(src, dest, "avx512_vnni")


def _one_file(write: Callable[[Path], None], dest: Path) -> None:
    """``write(path)`` in a scratch folder, then DEST as one file (INC keeps weights beside it)."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.onnx"
        write(out)
        _save(onnx.load(str(out)), dest)


def inc_dynamic(src: Path, dest: Path, calibration: Path | None) -> None:
    """Intel Neural Compressor (onnx-neural-compressor): ``DynamicQuantConfig()`` as it comes."""
    from onnx_neural_compressor.quantization import config, quantize

    _one_file(lambda out: quantize(src, out, config.DynamicQuantConfig()), dest)


def inc_static(src: Path, dest: Path, calibration: Path | None) -> None:
    """Intel Neural Compressor: ``StaticQuantConfig(reader)`` with its defaults (QOperator, MinMax,
    per-tensor), calibrated on every row of ``--calibration``."""
    from onnx_neural_compressor import data_reader
    from onnx_neural_compressor.quantization import config, quantize

    rows = _rows(calibration)

    class Reader(data_reader.CalibrationDataReader):
        def __init__(self) -> None:
            self.position = 0

        def get_next(self) -> dict | None:
            if self.position >= len(rows):
                return None
            self.position += 1
            return rows[self.position - 1]

        def rewind(self) -> None:
            self.position = 0

    settings = config.StaticQuantConfig(Reader(), calibration_sampling_size=len(rows))
    _one_file(lambda out: quantize(src, out, settings), dest)


def nncf_transformer(src: Path, dest: Path, calibration: Path | None) -> None:
    """NNCF post-training int8 (``nncf.quantize``, ``ModelType.TRANSFORMER``) on the ONNX model,
    calibrated on the rows of ``--calibration``."""
    import nncf
    import onnx

    rows = _rows(calibration)
    model = onnx.load(str(src))
    quantized = nncf.quantize(
        model, nncf.Dataset(rows), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(rows)
    )
    _save(quantized, dest)


PEERS: dict[str, Callable[[Path, Path, Path | None], None]] = {
    "ort": ort_dynamic,
    "optimum-avx2": optimum_avx2,
    "optimum-avx512-vnni": optimum_avx512_vnni,
    "inc-dynamic": inc_dynamic,
    "inc-static": inc_static,
    "nncf": nncf_transformer,
}
CALIBRATED = frozenset({"inc-static", "nncf"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("src", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--calibration", type=Path)
    args = parser.parse_args(argv)
    PEERS[args.peer](args.src, args.dest, args.calibration)
    if not args.dest.is_file():
        print(f"{args.peer} wrote no {args.dest}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
