"""The sampler: Optuna's multi-objective TPE (objective gain up, quality drop down) with the
quality bound as a constraint, asked and told one candidate at a time. Its whole state is the
list of trials told so far, so a search resumes by replaying them (``TrialRecord``) into a new
study: nothing is evaluated twice, and the sampler sees what it saw before."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from optuna.trial import TrialState, create_trial

from engine.search import space
from engine.search.goal import Goal
from engine.search.space import ModelTraits, Plan

# The sampler's own random trials before it models the results; the one-shots come first anyway.
STARTUP_TRIALS = 6
# TPE converges on its favourite plans: after this many repeats in a row the next plan is drawn at
# random instead, and a space is exhausted when even random draws keep repeating.
RANDOM_AFTER_REPEATS = 3
MAX_REPEATS_IN_A_ROW = 50
# A family (pruning, low-rank...) whose candidates fail this often, none measured, is given up.
FAILURES_TO_GIVE_UP = 2


@dataclass
class TrialRecord:
    """One evaluated candidate, as the search (and its checkpoint) keeps it."""

    number: int
    plan: Plan
    params: dict[str, Any]
    distributions: dict[str, str]
    state: str  # "complete" or "failed"
    gain: float | None = None
    drop: float | None = None
    seconds: float = 0.0
    elapsed_seconds: float = 0.0  # search time when it ended, over every attempt
    error: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def feasible(self, goal: Goal) -> bool:
        return self.state == "complete" and self.drop is not None and self.drop <= goal.max_drop + 1e-12

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrialRecord:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class Proposal:
    trial: optuna.Trial
    plan: Plan
    repeat_of: TrialRecord | None


class Search:
    def __init__(self, goal: Goal, traits: ModelTraits, seed: int, prior: list[TrialRecord]):
        self.goal = goal
        self.traits = traits
        self.records: list[TrialRecord] = list(prior)
        self._repeats = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=seed, multivariate=True, group=True, n_startup_trials=STARTUP_TRIALS, constant_liar=False
            )
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        self._tpe = sampler
        self._random = optuna.samplers.RandomSampler(seed=seed)
        for record in prior:
            self.study.add_trial(self._frozen(record))
        seen = {space.plan_key(r.plan) for r in prior}
        for plan in space.one_shots(goal, traits):
            if space.plan_key(plan) not in seen:
                self.study.enqueue_trial(space.params_of(plan))

    def _frozen(self, record: TrialRecord) -> optuna.trial.FrozenTrial:
        distributions = {k: json_to_distribution(v) for k, v in record.distributions.items()}
        if record.state == "complete" and record.gain is not None and record.drop is not None:
            return create_trial(
                params=record.params, distributions=distributions, values=[record.gain, record.drop],
                constraints={"quality": record.drop - self.goal.max_drop},
            )
        return create_trial(state=TrialState.FAIL, params=record.params, distributions=distributions)

    def _not_applicable(self) -> set[str]:
        """Families that do not work on this model: refused as not applicable, or failed every
        time so far (twice or more), with no candidate of theirs measured."""
        failures: dict[str, int] = {}
        for r in self.records:
            if r.state == "failed":
                weight = FAILURES_TO_GIVE_UP if (r.error or {}).get("code") == "pass_not_applicable" else 1
                failures[r.plan["structure"]] = failures.get(r.plan["structure"], 0) + weight
        worked = {r.plan["structure"] for r in self.records if r.state == "complete"}
        return {s for s, n in failures.items() if n >= FAILURES_TO_GIVE_UP} - worked - {"none"}

    @property
    def exhausted(self) -> bool:
        return self._repeats >= MAX_REPEATS_IN_A_ROW

    def ask(self) -> Proposal:
        """The next plan to evaluate. Plans of a family that proved not applicable to this model
        (e.g. low-rank on a model without a layer to factorize) are told failed at once, unevaluated."""
        while True:
            self.study.sampler = self._random if self._repeats >= RANDOM_AFTER_REPEATS else self._tpe
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                trial = self.study.ask()
                plan = space.suggest(trial, self.goal, self.traits)
            if plan["structure"] not in self._not_applicable() or self.exhausted:
                break
            self._repeats += 1
            self.study.tell(trial, state=TrialState.FAIL)
        key = space.plan_key(plan)
        repeat = next((r for r in self.records if space.plan_key(r.plan) == key), None)
        return Proposal(trial=trial, plan=plan, repeat_of=repeat)

    def tell(self, proposal: Proposal, record: TrialRecord | None) -> None:
        """``record`` None: a repeat of an evaluated plan, told its earlier result."""
        trial = proposal.trial
        source = record or proposal.repeat_of
        assert source is not None
        self._repeats = 0 if record is not None else self._repeats + 1
        if record is not None:
            record.params = dict(trial.params)
            record.distributions = {k: distribution_to_json(v) for k, v in trial.distributions.items()}
            self.records.append(record)
        if source.state == "complete" and source.gain is not None and source.drop is not None:
            trial.set_constraint("quality", source.drop - self.goal.max_drop)
            self.study.tell(trial, [source.gain, source.drop])
        else:
            self.study.tell(trial, state=TrialState.FAIL)
