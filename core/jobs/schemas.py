"""The job spec (docs/architecture.md, API contract): versioned, ``extra="forbid"``. Recipe steps
are checked against the pass registry's JSON schemas (core/capabilities.py).

Every string of a spec must be text that encodes as UTF-8 (JSON's ``"\\ud800"`` escape gives a
lone surrogate, which no database or response can hold), and every part of it is bounded, so a
spec is refused here, before anything is stored and before the registry's schemas run over it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

# The limits of a spec request, in one place (docs/architecture.md, limits); published by
# GET /v1/capabilities.
MAX_SPEC_BODY_BYTES = 1024 * 1024
MAX_ID_CHARS = 40
MAX_RECIPE_STEPS = 32
MAX_LABELS = 32
MAX_LABEL_KEY_CHARS = 64
MAX_LABEL_VALUE_CHARS = 256
MAX_WEBHOOK_URL_CHARS = 2000
MAX_BATCH_SIZES = 16
# Inside recipe steps and benchmark settings, which the registry's schemas check in detail.
MAX_OPTION_TEXT_CHARS = 1024
MAX_OPTION_LIST_ITEMS = 4096
MAX_OPTION_DEPTH = 8

SPEC_LIMITS = {
    "max_spec_body_bytes": MAX_SPEC_BODY_BYTES,
    "max_recipe_steps": MAX_RECIPE_STEPS,
    "max_labels": MAX_LABELS,
    "max_label_key_chars": MAX_LABEL_KEY_CHARS,
    "max_label_value_chars": MAX_LABEL_VALUE_CHARS,
    "max_webhook_url_chars": MAX_WEBHOOK_URL_CHARS,
    "max_batch_sizes": MAX_BATCH_SIZES,
    "max_option_text_chars": MAX_OPTION_TEXT_CHARS,
    "max_option_list_items": MAX_OPTION_LIST_ITEMS,
    "max_option_depth": MAX_OPTION_DEPTH,
}

NOT_TEXT = "not valid Unicode text (a lone surrogate such as \\ud800); send UTF-8 text"


def _invalid(field: str, message: str) -> PydanticCustomError:
    """A ``spec_invalid`` error (api/errors.py). ``field`` names where it sits inside free-form
    JSON; empty, the error's location names it."""
    return PydanticCustomError("spec_invalid", message, {"field": field} if field else None)


def _check_text(value: str, field: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid(field, NOT_TEXT) from None


def _utf8(value: str) -> str:
    _check_text(value, "")
    return value


def _check_options(value: Any, field: str, depth: int = 0) -> None:
    """Free-form JSON (a recipe step, benchmark settings): text, and bounded in size and depth."""
    if depth > MAX_OPTION_DEPTH:
        raise _invalid(field, f"nested more than {MAX_OPTION_DEPTH} levels deep")
    if isinstance(value, str):
        if len(value) > MAX_OPTION_TEXT_CHARS:
            raise _invalid(field, f"text longer than {MAX_OPTION_TEXT_CHARS} characters")
        _check_text(value, field)
    elif isinstance(value, list):
        if len(value) > MAX_OPTION_LIST_ITEMS:
            raise _invalid(field, f"a list of {len(value)} items; at most {MAX_OPTION_LIST_ITEMS}")
        for index, item in enumerate(value):
            _check_options(item, f"{field}[{index}]", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, field)
            if len(key) > MAX_OPTION_TEXT_CHARS:
                raise _invalid(field, f"a key longer than {MAX_OPTION_TEXT_CHARS} characters")
            _check_options(item, f"{field}.{key}", depth + 1)


def _recipe(steps: list[Any]) -> list[Any]:
    for index, step in enumerate(steps):
        _check_options(step, f"recipe[{index}]")
    return steps


def _benchmark(settings: dict[str, Any]) -> dict[str, Any]:
    batch_sizes = settings.get("batch_sizes")
    if isinstance(batch_sizes, list) and len(batch_sizes) > MAX_BATCH_SIZES:
        raise _invalid("benchmark.batch_sizes", f"{len(batch_sizes)} batch sizes; at most {MAX_BATCH_SIZES}")
    _check_options(settings, "benchmark")
    return settings


# The strings of a spec: bounded, and text (pydantic refuses a lone surrogate in a bounded string
# itself, as ``string_unicode``; ``_utf8`` keeps that true whatever the constraints).
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS), AfterValidator(_utf8)]
WebhookUrl = Annotated[str, Field(max_length=MAX_WEBHOOK_URL_CHARS), AfterValidator(_utf8)]
LabelKey = Annotated[str, Field(min_length=1, max_length=MAX_LABEL_KEY_CHARS), AfterValidator(_utf8)]
LabelValue = Annotated[str, Field(max_length=MAX_LABEL_VALUE_CHARS), AfterValidator(_utf8)]
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=MAX_LABELS)]
Recipe = Annotated[list[dict[str, Any]], Field(max_length=MAX_RECIPE_STEPS), AfterValidator(_recipe)]
BenchmarkSettings = Annotated[dict[str, Any], AfterValidator(_benchmark)]


class GoalSpec(BaseModel):
    """What the user wants instead of how (docs/architecture.md, goal-driven search). Every
    field has a default; ``null`` means the default that depends on the model and dataset."""

    model_config = ConfigDict(extra="forbid")

    metric: Literal["accuracy", "f1", "cosine", "mse"] | None = Field(
        None,
        description="the quality the bound applies to; default: accuracy when the dataset has labels, "
        "else cosine fidelity to the original's outputs",
    )
    max_drop: float = Field(
        0.01, ge=0, le=1,
        description="absolute: 0.01 = one point of accuracy or F1, cosine 0.99 to the original, or an MSE "
        "0.01 above the original's",
    )
    objective: Literal["latency", "size", "macs", "memory"] = Field(
        "latency", description="what the best candidate minimises, within the quality bound"
    )
    batch_size: int | None = Field(
        None, ge=1, le=4096, description="the batch size latency and memory are judged at; default: the job's first benchmark batch size"
    )
    budget_minutes: float = Field(30, gt=0, le=24 * 60, description="search time; the job ends on time with the best found")
    methods: list[Literal["quantize", "prune", "lowrank", "distill"]] | None = Field(
        None, min_length=1, max_length=4, description="the ops the search may combine; default: every op that applies to the model"
    )


class JobSpec(BaseModel):
    """Exactly one of ``recipe`` (how) or ``goal`` (what); with neither, the default goal."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    model_id: Id
    dataset_id: Id | None = None
    eval_dataset_id: Id | None = Field(
        None, description="rows for the final held-out figure of a goal job; default: a seeded share of dataset_id"
    )
    recipe: Recipe | None = Field(None, min_length=1)
    goal: GoalSpec | None = None
    benchmark: BenchmarkSettings = Field(default_factory=dict)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    webhook_url: WebhookUrl | None = None
    labels: Labels = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_of_recipe_or_goal(self) -> JobSpec:
        if self.recipe is not None and self.goal is not None:
            raise _invalid("goal", "send a recipe (the steps) or a goal (what you want), not both")
        if self.recipe is None and self.goal is None:
            self.goal = GoalSpec()
        if self.eval_dataset_id is not None and self.goal is None:
            raise _invalid("eval_dataset_id", "eval_dataset_id applies to goal jobs; a recipe job is measured on dataset_id")
        return self


class BenchmarkSpec(BaseModel):
    """``POST /v1/benchmarks``: a stored model alone, or against a reference model."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    model_id: Id
    compare_to_model_id: Id | None = Field(None, description="measured as the candidate beside model_id")
    dataset_id: Id | None = None
    benchmark: BenchmarkSettings = Field(default_factory=dict)
    webhook_url: WebhookUrl | None = None
    labels: Labels = Field(default_factory=dict)
