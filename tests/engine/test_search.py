"""The search's parts on their own: the row split, the goal's defaults and scores, the Pareto
front, the sampler's resume, and (by construction) that the final figure is computed on rows
that neither built nor selected a candidate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import materials
from engine.data import Dataset
from engine.errors import DatasetInvalid, DatasetRequired
from engine.job import JobRequest, run_job
from engine.search import evaluate, pareto, run
from engine.search.goal import Goal, objective_gain, quality_drop, resolve_goal
from engine.search.space import MAX_EPOCHS, STUDENT_LR_HF, ModelTraits, one_shots, recipe_of
from engine.search.split import MAX_JUDGING_ROWS, split_rows
from engine.search.strategy import Search, TrialRecord

GOAL = Goal(metric="accuracy", max_drop=0.01, objective="latency", batch_size=8, budget_seconds=60,
            methods=("quantize", "prune", "lowrank", "distill"))


def test_the_split_is_disjoint_covers_every_row_and_follows_the_seed() -> None:
    split = split_rows(100, seed=3, eval_set=False)
    parts = [set(split.fit.tolist()), set(split.select.tolist()), set(split.held_out.tolist())]
    assert [len(p) for p in parts] == [60, 20, 20]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == set(range(100))
    assert split_rows(100, seed=3, eval_set=False).select.tolist() == split.select.tolist()
    assert split_rows(100, seed=4, eval_set=False).select.tolist() != split.select.tolist()
    with_eval = split_rows(100, seed=3, eval_set=True)
    assert len(with_eval.held_out) == 0 and len(with_eval.fit) + len(with_eval.select) == 100
    with pytest.raises(DatasetInvalid):
        split_rows(5, seed=0, eval_set=False)


def test_a_large_dataset_trains_on_every_row_past_the_judging_caps() -> None:
    split = split_rows(12_000, seed=0, eval_set=False)
    assert [len(split.fit), len(split.select), len(split.held_out)] == [12_000 - 2 * MAX_JUDGING_ROWS, MAX_JUDGING_ROWS, MAX_JUDGING_ROWS]
    assert len(set(split.fit.tolist()) | set(split.select.tolist()) | set(split.held_out.tolist())) == 12_000
    with_eval = split_rows(12_000, seed=0, eval_set=True)
    assert [len(with_eval.fit), len(with_eval.select), len(with_eval.held_out)] == [12_000 - MAX_JUDGING_ROWS, MAX_JUDGING_ROWS, 0]
    assert [len(p) for p in (split_rows(1797, seed=0, eval_set=False).fit, split_rows(1797, seed=0, eval_set=False).held_out)] == [1078, 360]


def test_one_shots_try_the_student_first_and_each_trained_structure_also_quantized() -> None:
    for fmt in ("onnx", "hf"):
        traits = ModelTraits(format=fmt, has_dataset=True, has_labels=fmt == "onnx", layers=6 if fmt == "hf" else None)
        plans = one_shots(GOAL, traits)
        assert plans[0] == {"structure": "none", "quantize": "auto"}
        assert plans[1]["structure"] == "distill" and plans[1]["quantize"] == "none"
        for float_plan in (p for p in plans if p["structure"] != "none" and p["quantize"] == "none"):
            twin = {**float_plan, "quantize": "auto"}
            assert twin in plans
            head, twin_recipe = recipe_of(float_plan, GOAL, traits), recipe_of(twin, GOAL, traits)
            assert twin_recipe[:-1] == head and twin_recipe[-1]["op"] == "quantize"
    student = recipe_of(plans[1], GOAL, ModelTraits(format="hf", has_dataset=True, has_labels=False, layers=6))[0]
    assert student["student"] == "fewer_layers" and student["lr"] == STUDENT_LR_HF and student["hidden_weight"] > 0
    assert student["layers"] == 4  # two thirds of MiniLM-L6's blocks
    # A one-block transformer has no student; its other structures stay.
    single = {p["structure"] for p in one_shots(GOAL, ModelTraits(format="hf", has_dataset=True, has_labels=False, layers=1))}
    assert "distill" not in single and "prune" in single


def test_a_quantized_twin_starts_from_the_model_its_structure_trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reused model is the one the steps would build again: same outputs as a build from scratch."""
    import onnxruntime as ort

    from engine.context import PassContext
    from engine.formats.detect import resolve_upload

    x_train, _, y_train, _ = materials.digits()
    fit = Dataset(format="npz", arrays={"image": x_train[:96]}, labels=y_train[:96])
    original = resolve_upload(materials.digits_cnn_onnx(), tmp_path / "original")
    prepared = evaluate.Prepared(original=original, baseline=original, fit=fit, select=None, held_out=None,
                                 tokenizer_folder=None, bench=None)  # type: ignore[arg-type]
    ctx = PassContext(work_dir=tmp_path / "trials", original=original, dataset=fit, seed=3)
    pruned = [{"op": "prune", "method": "structured", "ratio": 0.3, "finetune_epochs": 1}]
    twin = [*pruned, {"op": "quantize", "method": "dynamic"}]
    ran_ops: list[list[str]] = []
    real_run_recipe = evaluate.run_recipe

    def run_recipe(model: Any, passes: Any, context: Any) -> Any:
        ran_ops.append([p.op for p in passes])
        return real_run_recipe(model, passes, context)

    monkeypatch.setattr(evaluate, "run_recipe", run_recipe)
    trained = evaluate.Trained()
    _, float_ran = evaluate.build(pruned, prepared, ctx, tmp_path / "trials" / "c1", trained)
    reused, reused_ran = evaluate.build(twin, prepared, ctx, tmp_path / "trials" / "c2", trained)
    assert ran_ops == [["prune"], ["quantize"]]
    assert reused_ran[:1] == float_ran and reused_ran[1]["op"] == "quantize"
    scratch, scratch_ran = evaluate.build(twin, prepared, ctx, tmp_path / "trials" / "c3")
    assert ran_ops[-1] == ["prune", "quantize"]
    feed = {"image": x_train[96:104]}
    outputs = [ort.InferenceSession(str(m.path), providers=["CPUExecutionProvider"]).run(None, feed)[0] for m in (reused, scratch)]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)


def test_a_candidate_over_its_share_of_the_time_is_recorded_and_the_search_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    x_train, _, y_train, _ = materials.digits()
    np.savez(tmp_path / "rows.npz", image=x_train[:60], labels=y_train[:60])
    real_build = run.build
    calls = {"n": 0}

    def build(recipe: Any, prepared: Any, ctx: Any, work_dir: Path, *rest: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:  # a training that would run on: it checks for cancellation as a pass does
            while True:
                ctx.check_cancel()
                time.sleep(0.05)
        return real_build(recipe, prepared, ctx, work_dir, *rest)

    monkeypatch.setattr(run, "build", build)
    monkeypatch.setattr(run, "CANDIDATE_SHARE", 0.1)
    request = JobRequest(
        job_id="job_t", model_path=materials.digits_cnn_onnx(), dataset_path=tmp_path / "rows.npz",
        goal={"metric": "accuracy", "max_drop": 0.5, "batch_size": 8, "budget_minutes": 0.5, "methods": ["quantize"]},
        benchmark={"batch_sizes": [8], "warmup_runs": 1, "min_runs": 5, "max_runs": 20, "time_budget_seconds": 0.5, "measure_memory": False},
        candidate_id="cand_t_1", work_dir=tmp_path / "work", out_dir=tmp_path / "out",
    )
    started = time.monotonic()
    result = run_job(request)
    stopped = result["candidates"][0]
    assert stopped["metrics"]["search"]["error"]["code"] == "candidate_time_limit"
    assert 0.1 * 0.5 * 60 * 0.85 <= stopped["metrics"]["search"]["seconds"] < 10
    assert len(result["candidates"]) > 1 and time.monotonic() - started < 60


def test_goal_defaults_follow_the_dataset() -> None:
    labelled = Dataset(format="npz", arrays={"x": np.zeros((4, 2), np.float32)}, labels=np.array([0, 1, 0, 1]))
    regression = Dataset(format="npz", arrays={"x": np.zeros((4, 2), np.float32)}, labels=np.zeros((4, 1), np.float32))
    applicable = ["quantize", "prune"]
    assert resolve_goal({}, dataset=labelled, batch_sizes=[8, 1], applicable=applicable).metric == "accuracy"
    assert resolve_goal({}, dataset=regression, batch_sizes=[1], applicable=applicable).metric == "mse"
    unlabelled = resolve_goal({}, dataset=None, batch_sizes=[8, 1], applicable=applicable)
    assert (unlabelled.metric, unlabelled.batch_size, unlabelled.max_drop, unlabelled.objective) == ("cosine", 8, 0.01, "latency")
    assert unlabelled.methods == ("quantize", "prune") and unlabelled.budget_seconds == 30 * 60
    with pytest.raises(DatasetRequired):
        resolve_goal({"metric": "accuracy"}, dataset=None, batch_sizes=[1], applicable=applicable)


def test_drop_and_gain_are_read_in_the_metrics_units() -> None:
    base = {"quality": {"accuracy": 0.95, "mse": 0.10}}
    cand = {"quality": {"accuracy": 0.93, "mse": 0.12}, "fidelity": {"cosine_mean": 0.97}}
    assert quality_drop(GOAL, base, cand) == pytest.approx(0.02)
    assert quality_drop(Goal(**{**GOAL.__dict__, "metric": "mse"}), base, cand) == pytest.approx(0.02)
    assert quality_drop(Goal(**{**GOAL.__dict__, "metric": "cosine"}), base, cand) == pytest.approx(0.03)
    ratios = {"speedup": {"8": {"value": 2.5}}, "size": 4.0}
    assert objective_gain(GOAL, ratios) == 2.5
    assert objective_gain(Goal(**{**GOAL.__dict__, "objective": "size"}), ratios) == 4.0


def test_recipes_put_structure_first_and_quantization_last() -> None:
    traits = ModelTraits(format="onnx", has_dataset=True, has_labels=True, convolutional=True)
    for plan in one_shots(GOAL, traits):
        ops = [step["op"] for step in recipe_of(plan, GOAL, traits)]
        assert ops and ops == sorted(ops, key=["prune", "lowrank", "distill", "finetune", "quantize"].index), ops
    lowrank = recipe_of({"structure": "lowrank", "lowrank_ratio": 0.5, "epochs": 2, "quantize": "auto"}, GOAL, traits)
    assert [s["method"] for s in lowrank] == ["tucker", "train", "auto"]


def _record(number: int, gain: float, drop: float, state: str = "complete") -> TrialRecord:
    return TrialRecord(number=number, plan={"structure": "none", "quantize": "auto"}, params={}, distributions={},
                       state=state, gain=gain, drop=drop, extra={"candidate_id": f"c{number}"})


def test_the_pareto_front_keeps_only_undominated_candidates() -> None:
    records = [_record(0, 2.0, 0.01), _record(1, 3.0, 0.05), _record(2, 1.5, 0.02), _record(3, 3.0, 0.04),
               _record(4, 9.0, 0.0, state="failed")]
    assert [r.number for r in pareto.front(records)] == [3, 0]


def test_a_resumed_search_replays_what_it_evaluated_and_goes_on() -> None:
    traits = ModelTraits(format="onnx", has_dataset=True, has_labels=True)
    first = Search(GOAL, traits, seed=0, prior=[])
    for number in range(4):
        proposal = first.ask()
        record = TrialRecord(number=number, plan=proposal.plan, params={}, distributions={}, state="complete",
                             gain=1.0 + number, drop=0.001 * number, extra={"candidate_id": f"c{number}"})
        first.tell(proposal, record)
    saved = [r.to_json() for r in first.records]
    resumed = Search(GOAL, traits, seed=0, prior=[TrialRecord.from_json(r) for r in saved])
    done = [t for t in resumed.study.trials if t.state.is_finished()]
    assert [t.values for t in done] == [t.values for t in first.study.trials if t.state.is_finished()]
    assert len(done) == 4
    # The one-shots already evaluated are not proposed again.
    evaluated = {str(r.plan) for r in first.records}
    assert str(resumed.ask().plan) not in evaluated


def _proposals(search: Search, count: int) -> list[dict[str, Any]]:
    """``count`` plans asked of ``search``, each told a result that favours longer training."""
    plans = []
    for number in range(len(search.records), len(search.records) + count):
        proposal = search.ask()
        plans.append(proposal.plan)
        search.tell(proposal, None if proposal.repeat_of else TrialRecord(
            number=number, plan=proposal.plan, params={}, distributions={}, state="complete",
            gain=1.0 + proposal.plan.get("epochs", 0) / 10, drop=0.0, extra={"candidate_id": f"c{number}"}))
    return plans


def test_recovery_training_is_searched_past_a_handful_of_epochs_and_at_a_higher_rate() -> None:
    plans = _proposals(Search(GOAL, ModelTraits(format="onnx", has_dataset=True, has_labels=True), seed=0, prior=[]), 30)
    trained = [p for p in plans if p["structure"] != "none"]
    assert max(p["epochs"] for p in trained) > 6 and max(p["epochs"] for p in trained) <= MAX_EPOCHS
    assert {p["lr_scale"] for p in trained} == {1.0, 3.0}
    scaled = recipe_of({"structure": "prune", "prune_ratio": 0.7, "prune_steps": 3, "epochs": 16, "lr_scale": 3.0, "quantize": "none"},
                       GOAL, ModelTraits(format="onnx", has_dataset=True, has_labels=True))
    assert scaled == [{"op": "prune", "method": "structured", "ratio": 0.7, "finetune_epochs": 16, "lr": 0.003, "steps": 3}]


def test_a_search_saved_when_training_drew_fewer_epochs_resumes() -> None:
    """Records written when recovery training drew 1-6 epochs and had no rate choice replay into
    the study that draws 1-MAX_EPOCHS and a rate: Optuna takes both (another ``log`` setting
    for a parameter it would refuse)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
        distribution_to_json,
    )

    plan = {"structure": "prune", "prune_ratio": 0.3, "prune_steps": 1, "epochs": 2, "quantize": "none"}
    former = {"structure": CategoricalDistribution(["none", "prune", "lowrank", "distill"]),
              "prune_ratio": FloatDistribution(0.1, 0.9, step=0.05), "prune_steps": IntDistribution(1, 3),
              "epochs": IntDistribution(1, 6), "quantize": CategoricalDistribution(["none", "auto"])}
    saved = TrialRecord(number=0, plan=plan, params=dict(plan), distributions={k: distribution_to_json(v) for k, v in former.items()},
                        state="complete", gain=1.5, drop=0.0, extra={"candidate_id": "c0"})
    search = Search(GOAL, ModelTraits(format="onnx", has_dataset=True, has_labels=True), seed=0,
                    prior=[TrialRecord.from_json(saved.to_json())])
    plans = _proposals(search, 20)
    assert len(search.records) > 10
    assert all(1 <= p["epochs"] <= MAX_EPOCHS for p in plans if p["structure"] != "none")


def test_the_final_figure_is_computed_on_rows_that_neither_built_nor_selected_a_candidate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every row carries its number in its pixels; the datasets each stage received are read back."""
    x_train, _, y_train, _ = materials.digits()
    rows = 120
    x = x_train[:rows].copy()
    x[:, 0, 0, 0] = np.arange(rows) / 1000.0  # a row's identity, read back below
    np.savez(tmp_path / "rows.npz", image=x, labels=y_train[:rows])
    seen: dict[str, set[int]] = {"fit": set(), "select": set(), "held_out": set()}

    def ids(dataset: Dataset | None) -> set[int]:
        assert dataset is not None
        return set(np.rint(dataset.arrays["image"][:, 0, 0, 0] * 1000).astype(int).tolist())

    real_build, real_measure, real_bench = evaluate.build, run.measure, run.benchmark_models

    def build(recipe: Any, prepared: Any, ctx: Any, work_dir: Path, *rest: Any) -> Any:
        seen["fit"] |= ids(prepared.fit)
        return real_build(recipe, prepared, ctx, work_dir, *rest)

    def measure(*args: Any, **kwargs: Any) -> Any:
        seen["select"] |= ids(args[4].select)
        return real_measure(*args, **kwargs)

    def final(*args: Any, **kwargs: Any) -> Any:
        seen["held_out"] |= ids(kwargs["dataset"])
        return real_bench(*args, **kwargs)

    monkeypatch.setattr(run, "build", build)
    monkeypatch.setattr(run, "measure", measure)
    monkeypatch.setattr(run, "benchmark_models", final)
    request = JobRequest(
        job_id="job_t", model_path=materials.digits_cnn_onnx(), dataset_path=tmp_path / "rows.npz",
        goal={"metric": "accuracy", "max_drop": 0.5, "batch_size": 8, "budget_minutes": 0.3, "methods": ["quantize"]},
        benchmark={"batch_sizes": [8], "warmup_runs": 1, "min_runs": 5, "max_runs": 20, "time_budget_seconds": 0.5, "measure_memory": False},
        candidate_id="cand_t_1", work_dir=tmp_path / "work", out_dir=tmp_path / "out",
    )
    result = run_job(request)
    assert result["candidates"] and all(seen.values()), seen
    assert not (seen["held_out"] & (seen["fit"] | seen["select"]))
    assert not (seen["fit"] & seen["select"])
    described = json.loads((tmp_path / "out" / "report.json").read_text())["search"]["rows"]
    assert [described[k]["rows"] for k in ("calibration_and_training", "selection", "held_out")] == [72, 24, 24]
    assert len(seen["held_out"]) == 24


def test_the_final_re_measure_keeps_the_feasible_candidate_with_the_most_margin() -> None:
    # Five feasible on the selection rows: the four fastest sit at the bound, the fifth has margin.
    front = [_record(i, gain=5.0 - i * 0.5, drop=0.0099) for i in range(4)] + [_record(4, gain=1.5, drop=0.0)]
    front.append(_record(5, gain=9.0, drop=0.2))  # infeasible, the fastest of all
    chosen = run.final_candidates(front, GOAL)
    assert len(chosen) == run.MAX_FINAL_CANDIDATES
    assert [r.number for r in chosen] == [0, 1, 2, 4]
    assert [r.number for r in run.final_candidates(front[:3] + front[4:], GOAL)] == [0, 1, 2, 4]
