"""/v1/models and /v1/datasets."""

from __future__ import annotations

from api.routers.assets import asset_router
from api.schemas import DatasetOut, ModelOut
from core.catalog import service as catalog

models = asset_router(
    plural="models",
    summary="Upload a model: .onnx, or a zip/tar of an ONNX model with external data or of a Hugging Face checkpoint",
    out=ModelOut,
    create=catalog.create_model,
    list_rows=catalog.list_models,
    get_row=catalog.get_model,
    delete_row=catalog.delete_model,
)
datasets = asset_router(
    plural="datasets",
    summary="Upload a dataset: .npz (one array per model input, optional labels), .jsonl (text, label), .parquet",
    out=DatasetOut,
    create=catalog.create_dataset,
    list_rows=catalog.list_datasets,
    get_row=catalog.get_dataset,
    delete_row=catalog.delete_dataset,
)
