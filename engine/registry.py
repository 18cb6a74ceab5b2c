"""The pass registry: every compression method is a ``Pass`` subclass with a typed config.

A pass registers itself when its module is imported (as Olive's passes do); its config is a
pydantic model with ``extra="forbid"`` whose JSON schema is what ``/v1/capabilities`` publishes and
what the API validates job specs against. A pass names its config once, as its type parameter
(``class Fp16Convert(Pass[Fp16Config])``), so ``self.config`` is typed and the registry knows the
config class. Adding a method is adding one file under ``engine/passes/``.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError

from engine.context import PassContext
from engine.errors import ConfigInvalid, PassNotApplicable
from engine.model import ModelFile, ModelFormat


class PassConfig(BaseModel):
    """Base of every pass config. ``op`` and ``method`` select the pass; the rest is its options."""

    model_config = ConfigDict(extra="forbid", frozen=True)


ConfigT = TypeVar("ConfigT", bound=PassConfig)


def _declared_config(cls: type) -> type[PassConfig] | None:
    """The config class a subclass gives as its type parameter: ``Pass[Fp16Config]``."""
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = get_origin(base)
        if isinstance(origin, type) and issubclass(origin, Pass):
            for arg in get_args(base):
                if isinstance(arg, type) and issubclass(arg, PassConfig):
                    return arg
    return None


class Pass(Generic[ConfigT]):
    """A compression step. Subclasses name their config as the type parameter, set the class
    attributes and implement ``run``."""

    op: ClassVar[str]
    method: ClassVar[str]
    config_type: ClassVar[type[PassConfig]]
    summary: ClassVar[str] = ""
    accepts: ClassVar[tuple[ModelFormat, ...]] = ("onnx",)
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    needs_dataset: ClassVar[bool] = False
    # The method used when a step gives only ``{"op": ...}``.
    default_for_op: ClassVar[bool] = False

    _registry: ClassVar[dict[tuple[str, str], type[Pass[Any]]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = _declared_config(cls)
        if declared is not None:
            cls.config_type = declared
        if getattr(cls, "method", None) is None or getattr(cls, "op", None) is None:
            return  # an abstract intermediate class
        if not hasattr(cls, "config_type"):
            raise TypeError(f"pass {cls.__name__} names no config: subclass Pass[ItsConfig]")
        key = (cls.op, cls.method)
        if key in Pass._registry and Pass._registry[key] is not cls:
            raise RuntimeError(f"pass {key} registered twice")
        Pass._registry[key] = cls

    def __init__(self, config: ConfigT):
        self.config: ConfigT = config

    @property
    def name(self) -> str:
        return f"{self.op}.{self.method}"

    def check(self, model: ModelFile, ctx: PassContext) -> None:
        """Refuse early, with a clear error, a model this pass cannot handle."""
        if model.format not in self.accepts:
            raise PassNotApplicable(
                f"{self.name} accepts {', '.join(self.accepts)} models, not {model.format}",
                detail={"pass": self.name, "format": model.format},
            )
        if self.needs_dataset:
            ctx.require_dataset(f"{self.name} uses data")

    def run(self, model: ModelFile, ctx: PassContext) -> ModelFile:
        raise NotImplementedError


_discovered = False


def _discover() -> None:
    """Import every module of ``engine.passes`` so that each pass registers itself."""
    global _discovered
    if _discovered:
        return
    import engine.passes as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    _discovered = True


def all_passes() -> list[type[Pass]]:
    _discover()
    return sorted(Pass._registry.values(), key=lambda p: (p.op, p.method))


def op_methods() -> dict[str, dict[str, Any]]:
    """Each op's methods and the one a step that gives only ``{"op": ...}`` runs, e.g.
    ``{"quantize": {"default": "auto", "methods": ["auto", "codebook", ...]}}``; ``default`` is
    None where the step must name a method. ``capabilities()`` publishes it, so the service
    resolves a step exactly as ``get_pass`` does."""
    ops: dict[str, dict[str, Any]] = {}
    for p in all_passes():  # sorted by (op, method): methods come out sorted
        entry = ops.setdefault(p.op, {"default": None, "methods": []})
        entry["methods"].append(p.method)
        if p.default_for_op and entry["default"] is None:
            entry["default"] = p.method
    return ops


def get_pass(op: str, method: str | None = None) -> type[Pass]:
    ops = op_methods()
    entry = ops.get(op)
    if entry is None:
        raise ConfigInvalid(f"unknown op {op!r}; known ops: {', '.join(sorted(ops))}", detail={"field": "op"})
    if method is None:
        method = entry["default"]
        if method is None:
            raise ConfigInvalid(f"op {op!r} needs a method", detail={"field": "method"})
    elif method not in entry["methods"]:
        raise ConfigInvalid(
            f"unknown method {method!r} for op {op!r}; known: {', '.join(entry['methods'])}",
            detail={"field": "method"},
        )
    return Pass._registry[(op, method)]


def build_step(step: dict[str, Any]) -> Pass:
    """Turn one recipe step (``{"op": ..., "method": ..., **options}``) into a configured pass."""
    options = dict(step)
    op = options.pop("op", None)
    if not isinstance(op, str):
        raise ConfigInvalid("each recipe step needs an 'op'", detail={"field": "op"})
    method = options.pop("method", None)
    pass_type = get_pass(op, method)
    try:
        config = pass_type.config_type.model_validate(options)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigInvalid(
            f"{pass_type.op}.{pass_type.method}: {first['msg']} at {'.'.join(map(str, first['loc']))}",
            detail={"errors": exc.errors(include_url=False, include_context=False)},
        ) from None
    return pass_type(config)


def step_schema(pass_type: type[Pass]) -> dict[str, Any]:
    """The JSON schema of one recipe step of this pass: its config plus ``op`` and ``method``."""
    schema = pass_type.config_type.model_json_schema()
    props = dict(schema.get("properties", {}))
    props["op"] = {"const": pass_type.op}
    method_schema: dict[str, Any] = {"const": pass_type.method}
    props["method"] = method_schema
    schema["properties"] = props
    schema["required"] = ["op", *schema.get("required", [])]
    schema["additionalProperties"] = False
    return schema


def capabilities() -> dict[str, Any]:
    """What ``/v1/capabilities`` serves: every pass with its config schema, formats and devices,
    and each op's methods with its default (``op_methods``)."""
    passes = []
    for p in all_passes():
        passes.append(
            {
                "op": p.op,
                "method": p.method,
                "name": f"{p.op}.{p.method}",
                "summary": p.summary,
                "formats": list(p.accepts),
                "devices": list(p.devices),
                "needs_dataset": p.needs_dataset,
                "default_for_op": p.default_for_op,
                "config_schema": step_schema(p),
            }
        )
    return {"passes": passes, "ops": op_methods(), "formats": ["onnx", "hf"]}
