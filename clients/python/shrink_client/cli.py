"""The client's commands: ``shrink compress``, ``shrink models|datasets|jobs|artifacts ...``.

``register(app)`` adds them to a Typer app (the server's ``shrink`` calls it); ``app`` is the
standalone command of a client-only install. Errors print one line and exit 1 (the API or the job
said no) or 2 (the command line is wrong); never a traceback."""

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from shrink_client import errors
from shrink_client.client import Client, Job
from shrink_client.progress import ProgressLine
from shrink_client.records import Asset, Event, JobRecord, LogEvent, ProgressEvent, StateEvent

Url = Annotated[str | None, typer.Option(
    "--url", envvar="SHRINK_URL", show_envvar=True, help="the Shrink API's URL (default: http://127.0.0.1:8000)")]
ApiKey = Annotated[str | None, typer.Option(
    "--api-key", envvar="SHRINK_API_KEY", show_envvar=True, help="your API key (shk_...)")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON (one record per line for lists) instead of a table")]
OutputDir = Annotated[Path, typer.Option("--output", "-o", help="the folder to write into (created if missing)")]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _say(message: str) -> None:
    typer.echo(message, err=True)


@contextlib.contextmanager
def _client(url: str | None, api_key: str | None) -> Iterator[Client]:
    """A client whose errors end the command with one line."""
    try:
        with Client(url, api_key) as client:
            yield client
    except errors.ConfigurationError as exc:
        _fail(exc.message, 2)
    except errors.ShrinkError as exc:
        _fail(f"{exc.message} [{exc.code}]")
    except KeyboardInterrupt:
        _fail("interrupted (a submitted job goes on on the server)", 130)


def _json_value(value: str | None, option: str) -> Any:
    """JSON given inline or as the path of a JSON file."""
    if value is None:
        return None
    text = value
    if not value.lstrip().startswith(("{", "[")) and Path(value).is_file():
        text = Path(value).read_text()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"neither JSON nor a JSON file ({exc})", param_hint=option) from exc


def _dump(record: Any) -> str:
    data = record.model_dump(mode="json") if hasattr(record, "model_dump") else record
    return json.dumps(data, indent=2, sort_keys=True)


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _upload_progress(label: str) -> tuple[ProgressLine, Callable[[int, int], None]]:
    line = ProgressLine()
    return line, lambda done, total: line.bytes(label, done, total)


def _input(client: Client, value: str, kind: str, prefix: str, name: str | None) -> str:
    """The id of an uploaded record, or the id of ``value`` uploaded now."""
    path = Path(value)
    if path.is_file():
        line, progress = _upload_progress(f"uploading {path.name}")
        upload = client.upload_model if kind == "model" else client.upload_dataset
        try:
            record = upload(path, name if kind == "model" else None, progress=progress)
        finally:
            line.close()
        _say(f"uploaded {kind} {record.id} ({record.format}, {_size(record.size_bytes)})")
        return record.id
    if value.startswith(prefix):
        return value
    raise typer.BadParameter(f"{value!r} is neither a file nor a {kind} id ({prefix}...)", param_hint=kind.upper())


def compress(
    model: Annotated[str, typer.Argument(
        help="the model to compress: a file to upload (ONNX, or a Hugging Face folder's archive) or an uploaded model's id (mdl_...)")],
    dataset: Annotated[str | None, typer.Option(
        "--dataset", help="calibration / fine-tuning data: a file to upload (.npz, .jsonl, ...) or a dataset id (ds_...)")] = None,
    recipe: Annotated[str | None, typer.Option(
        "--recipe", help='the steps, as JSON or a JSON file, e.g. \'[{"op": "quantize", "method": "dynamic"}]\'')] = None,
    goal: Annotated[str | None, typer.Option(
        "--goal", help='instead of a recipe: a goal as JSON or a JSON file, e.g. \'{"metric": "cosine", "max_drop": 0.01}\' (with neither: the service\'s default goal)')] = None,
    benchmark: Annotated[str | None, typer.Option(
        "--benchmark", help='benchmark settings as JSON or a JSON file, e.g. \'{"batch_sizes": [1, 8]}\'')] = None,
    name: Annotated[str | None, typer.Option("--name", help="the uploaded model's display name (default: the file name)")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait for the job to finish, showing its progress")] = False,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="download the best candidate's model into this folder (implies --wait)")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="with --wait: stop waiting after this many seconds")] = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Upload a model (and a dataset) and submit a compression job.

    With --wait or --output, wait for it and download the best candidate. Prints the job id, or
    with --output the downloaded file's path."""
    if recipe is not None and goal is not None:
        raise typer.BadParameter("give --recipe or --goal, not both", param_hint="--recipe/--goal")
    steps = _json_value(recipe, "--recipe")
    goal_spec = _json_value(goal, "--goal")
    bench = _json_value(benchmark, "--benchmark")
    with _client(url, api_key) as client:
        model_id = _input(client, model, "model", "mdl_", name)
        dataset_id = _input(client, dataset, "dataset", "ds_", None) if dataset else None
        job = client.submit(model_id, dataset_id, recipe=steps, goal=goal_spec, benchmark=bench)
        _say(f"submitted job {job.id}")
        if not (wait or output):
            typer.echo(job.id)
            return
        job.wait(timeout)
        _end_of(job)
        if output is None:
            typer.echo(job.id)
            return
        line, progress = _upload_progress("downloading")
        try:
            path = job.download_best(output, progress=progress)
        finally:
            line.close()
        typer.echo(str(path))


def _end_of(job: JobRecord) -> None:
    """Exit 1 with one line unless the job succeeded with a best candidate."""
    if job.state == "failed":
        error = job.error or {}
        _fail(f"job {job.id} failed: {error.get('message', 'no reason given')} [{error.get('code', 'job_failed')}]")
    if job.state != "succeeded":
        _fail(f"job {job.id} was {job.state}")
    if not job.best_candidate_id:
        _fail(f"job {job.id} has no best candidate: every candidate was flagged (shrink jobs report {job.id})")
    _say(f"job {job.id} succeeded; best candidate {job.best_candidate_id}")


def _asset_app(kind: str, prefix: str) -> typer.Typer:
    """``shrink models ...`` and ``shrink datasets ...``: the same commands for both."""
    plural = f"{kind}s"
    group = typer.Typer(help=f"Uploaded {plural}: list, show, delete.", no_args_is_help=True)

    @group.command("list")
    def list_(
        name: Annotated[str | None, typer.Option("--name", help=f"only {plural} with this name")] = None,
        as_json: AsJson = False, url: Url = None, api_key: ApiKey = None,
    ) -> None:
        """Every uploaded record, newest first."""
        with _client(url, api_key) as client:
            records: list[Asset] = list((client.models if kind == "model" else client.datasets)(name=name))
        if as_json:
            for r in records:
                typer.echo(json.dumps(r.model_dump(mode="json"), sort_keys=True))
            return
        _table([[r.id, r.name, r.format, _size(r.size_bytes), r.created_at.strftime("%Y-%m-%d %H:%M")] for r in records],
               ["ID", "NAME", "FORMAT", "SIZE", "CREATED"])

    @group.command("show")
    def show(
        record_id: Annotated[str, typer.Argument(help=f"the {kind}'s id ({prefix}...)", metavar="ID")],
        url: Url = None, api_key: ApiKey = None,
    ) -> None:
        """The record as JSON (with what inspection found in ``info``)."""
        with _client(url, api_key) as client:
            typer.echo(_dump((client.get_model if kind == "model" else client.get_dataset)(record_id)))

    @group.command("delete")
    def delete(
        record_id: Annotated[str, typer.Argument(help=f"the {kind}'s id ({prefix}...)", metavar="ID")],
        url: Url = None, api_key: ApiKey = None,
    ) -> None:
        """Delete it (refused while jobs refer to it)."""
        with _client(url, api_key) as client:
            (client.delete_model if kind == "model" else client.delete_dataset)(record_id)
        _say(f"deleted {record_id}")

    return group


JobId = Annotated[str, typer.Argument(help="the job's id (job_...)", metavar="JOB_ID")]


def _jobs_app() -> typer.Typer:
    group = typer.Typer(help="Jobs: list, show, watch, cancel, report.", no_args_is_help=True)

    @group.command("list")
    def list_(
        state: Annotated[str | None, typer.Option("--state", help="only jobs in this state (queued, running, succeeded, failed, canceled)")] = None,
        model: Annotated[str | None, typer.Option("--model", help="only jobs of this model id")] = None,
        as_json: AsJson = False, url: Url = None, api_key: ApiKey = None,
    ) -> None:
        """Every job, newest first."""
        with _client(url, api_key) as client:
            jobs = list(client.jobs(state=state, model=model))
        if as_json:
            for j in jobs:
                typer.echo(json.dumps(j.model_dump(mode="json"), sort_keys=True))
            return
        _table([[j.id, j.state, f"{j.progress.fraction:.0%}", j.model_id, j.created_at.strftime("%Y-%m-%d %H:%M")] for j in jobs],
               ["ID", "STATE", "PROGRESS", "MODEL", "CREATED"])

    @group.command("show")
    def show(job_id: JobId, url: Url = None, api_key: ApiKey = None) -> None:
        """The job as JSON."""
        with _client(url, api_key) as client:
            typer.echo(_dump(client.get_job(job_id)))

    @group.command("watch")
    def watch(job_id: JobId, url: Url = None, api_key: ApiKey = None) -> None:
        """Follow the job's events until it ends; exit 1 unless it succeeded."""
        with _client(url, api_key) as client:
            for event in client.events(job_id):
                typer.echo(_event_line(event))
            job: Job = client.get_job(job_id)
        if job.state != "succeeded":
            _end_of(job)

    @group.command("cancel")
    def cancel(job_id: JobId, url: Url = None, api_key: ApiKey = None) -> None:
        """Cancel a queued or running job."""
        with _client(url, api_key) as client:
            job = client.cancel_job(job_id)
        _say(f"job {job.id}: {job.state}" + (" (cancel requested)" if job.cancel_requested and job.state == "running" else ""))

    @group.command("report")
    def report(
        job_id: JobId,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="write the JSON to this file instead of stdout")] = None,
        url: Url = None, api_key: ApiKey = None,
    ) -> None:
        """The finished job's report as JSON (docs/benchmarks.md says what each figure means)."""
        with _client(url, api_key) as client:
            text = json.dumps(client.report(job_id), indent=2)
        if output is None:
            typer.echo(text)
        else:
            output.write_text(text + "\n")
            _say(f"wrote {output}")

    return group


def _event_line(event: Event) -> str:
    if isinstance(event, StateEvent):
        error = f": {event.error.get('message', '')} [{event.error.get('code', '')}]" if event.error else ""
        return f"state     {event.state}{error}"
    if isinstance(event, ProgressEvent):
        return f"progress  {event.fraction:4.0%} {event.stage} {event.message}".rstrip()
    if isinstance(event, LogEvent):
        extra = dict(event.model_extra or {})
        head = str(extra.pop("message", None) or extra.pop("event", ""))
        return f"log       {head} " + " ".join(f"{k}={v}" for k, v in sorted(extra.items()))
    return f"{event.type:<9} {json.dumps(event.model_extra or {}, sort_keys=True)}"


def _artifacts_app() -> typer.Typer:
    group = typer.Typer(help="A job's files: list, download.", no_args_is_help=True)

    @group.command("list")
    def list_(job_id: JobId, as_json: AsJson = False, url: Url = None, api_key: ApiKey = None) -> None:
        """The job's artifacts (models, report, manifest); the best candidate's model is marked."""
        with _client(url, api_key) as client:
            items = client.artifacts(job_id)
        if as_json:
            for a in items:
                typer.echo(json.dumps(a.model_dump(mode="json"), sort_keys=True))
            return
        _table([[a.id, a.kind, a.format, a.filename, _size(a.size_bytes), "best" if a.best else ""] for a in items],
               ["ID", "KIND", "FORMAT", "FILE", "SIZE", ""])

    @group.command("download")
    def download(
        artifact_id: Annotated[str, typer.Argument(help="the artifact's id (art_...)", metavar="ID")],
        output: OutputDir = Path("."), url: Url = None, api_key: ApiKey = None,
    ) -> None:
        """Download one artifact (streamed, sha256 checked); prints the file's path."""
        with _client(url, api_key) as client:
            line, progress = _upload_progress("downloading")
            try:
                path = client.download_artifact(artifact_id, output, progress=progress)
            finally:
                line.close()
        typer.echo(str(path))

    return group


def register(app: typer.Typer) -> None:
    """Add the client's commands to ``app``."""
    app.command("compress")(compress)
    app.add_typer(_asset_app("model", "mdl_"), name="models")
    app.add_typer(_asset_app("dataset", "ds_"), name="datasets")
    app.add_typer(_jobs_app(), name="jobs")
    app.add_typer(_artifacts_app(), name="artifacts")


app = typer.Typer(help="Shrink's client: compress models on a Shrink service.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
register(app)


def main() -> None:
    app(prog_name="shrink")


if __name__ == "__main__":
    sys.exit(main())
