"""docker-compose.yml: the services, their commands, settings, start order and the GPU worker.

No Docker engine runs here, so the file is read as Compose reads it: YAML (with anchors and
merge keys), then ``${VAR}`` interpolation, resolved below the way Compose documents it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from tests.ops.shrink_contract import (
    ROOT,
    parse_shrink_command,
    settings_from,
    unknown_shrink_names,
)

COMPOSE_FILE = ROOT / "docker-compose.yml"
APP_SERVICES = {"migrate", "api", "worker-cpu", "worker-gpu"}
REQUIRED_SERVICES = APP_SERVICES | {"postgres", "redis", "minio", "minio-init"}
# What an operator exports before `docker compose up` (the `:?` variables).
OPERATOR_ENV = {
    "SHRINK_SECRET_KEY": "k" * 48,
    "POSTGRES_PASSWORD": "pg-password",
    "MINIO_ROOT_PASSWORD": "minio-password",
}

_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}")


class MissingVariable(Exception):
    pass


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Compose's substitution: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, $$."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, colon, operator, argument = match.groups()
        value = environ.get(name)
        missing = value is None or (colon == ":" and value == "")
        if operator is None:
            return value or ""
        if operator == "-":
            return argument if missing else value  # type: ignore[return-value]
        if missing:
            raise MissingVariable(f"{name}: {argument}")
        return value  # type: ignore[return-value]

    return _INTERPOLATION.sub(substitute, text)


def resolve(node: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, environ)
    if isinstance(node, list):
        return [resolve(item, environ) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, environ) for key, value in node.items()}
    return node


def load_compose(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    return resolve(raw, OPERATOR_ENV if environ is None else environ)


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return load_compose()["services"]


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {name: str(value) for name, value in environment.items()}


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    dependencies = service.get("depends_on") or {}
    if isinstance(dependencies, list):
        return dict.fromkeys(dependencies, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in dependencies.items()}


def runs_our_image(service: dict[str, Any]) -> bool:
    return "build" in service or str(service.get("image", "")).split(":")[0].endswith("shrink")


def test_compose_file_has_every_service_of_a_production_host(services: dict[str, Any]) -> None:
    assert set(services) >= REQUIRED_SERVICES, REQUIRED_SERVICES - set(services)


def test_exactly_the_app_services_run_our_image(services: dict[str, Any]) -> None:
    assert {name for name, service in services.items() if runs_our_image(service)} == APP_SERVICES


@pytest.mark.parametrize(
    ("service_name", "subcommand"),
    [("migrate", "migrate"), ("api", "api"), ("worker-cpu", "worker"), ("worker-gpu", "worker")],
)
def test_app_service_runs_a_command_the_shrink_cli_accepts(
    services: dict[str, Any], service_name: str, subcommand: str
) -> None:
    command = services[service_name]["command"]
    # Exec form: a string would be split by Compose without a shell, quoting and all.
    assert isinstance(command, list), f"{service_name}: use the list form of command"
    assert "entrypoint" not in services[service_name], "the image's entrypoint (tini) must stay"
    args = parse_shrink_command(command)
    assert args.command == subcommand


def test_every_service_using_our_image_starts_with_the_shrink_script(
    services: dict[str, Any],
) -> None:
    for name, service in services.items():
        if runs_our_image(service):
            assert service["command"][0] == "shrink", name


def test_api_listens_on_all_interfaces_on_the_published_port(services: dict[str, Any]) -> None:
    args = parse_shrink_command(services["api"]["command"])
    assert args.host == "0.0.0.0"
    container_ports = {str(port).rsplit(":", 1)[-1] for port in services["api"]["ports"]}
    assert str(args.port) in container_ports


def test_each_worker_consumes_its_own_queue(services: dict[str, Any]) -> None:
    assert parse_shrink_command(services["worker-cpu"]["command"]).queues == "cpu"
    assert parse_shrink_command(services["worker-gpu"]["command"]).queues == "gpu"


def test_every_shrink_variable_in_the_file_is_a_real_setting() -> None:
    text = COMPOSE_FILE.read_text()
    referenced = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    declared: set[str] = set()
    for service in load_compose()["services"].values():
        declared |= set(environment_of(service))
    names = referenced | declared
    assert any(name.startswith("SHRINK_") for name in names), "no settings found: parser is wrong"
    assert unknown_shrink_names(names) == set()


@pytest.mark.parametrize("service_name", sorted(APP_SERVICES))
def test_app_environment_is_accepted_by_settings_in_production(
    services: dict[str, Any], service_name: str
) -> None:
    settings = settings_from(environment_of(services[service_name]))
    assert settings.env == "production"
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in settings.database_url
    assert settings.broker_url.startswith("redis://redis:6379/")
    assert settings.storage_backend == "s3"
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.secret_key == OPERATOR_ENV["SHRINK_SECRET_KEY"]


def test_compose_refuses_to_start_without_a_secret_key() -> None:
    without_key = {
        name: value for name, value in OPERATOR_ENV.items() if name != "SHRINK_SECRET_KEY"
    }
    with pytest.raises(MissingVariable, match="SHRINK_SECRET_KEY"):
        load_compose(without_key)
    with pytest.raises(MissingVariable, match="SHRINK_SECRET_KEY"):
        load_compose({**without_key, "SHRINK_SECRET_KEY": ""})


def test_gpu_worker_reserves_an_nvidia_gpu_and_builds_on_a_cuda_base(
    services: dict[str, Any],
) -> None:
    worker = services["worker-gpu"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        device.get("driver") == "nvidia" and "gpu" in device.get("capabilities", [])
        for device in devices
    ), devices
    assert worker["build"]["args"]["BASE_IMAGE"].startswith("nvidia/cuda:")
    # onnxruntime's CUDA build, at a release (Dockerfile: ONNXRUNTIME_GPU_VERSION).
    assert re.fullmatch(r"\d+\.\d+\.\d+", worker["build"]["args"]["ONNXRUNTIME_GPU_VERSION"])
    assert "ONNXRUNTIME_GPU_VERSION" not in services["worker-cpu"].get("build", {}).get("args", {})
    assert worker["image"] != services["worker-cpu"]["image"], "the GPU image needs its own tag"


def test_plain_compose_up_starts_everything_but_the_gpu_worker(services: dict[str, Any]) -> None:
    assert services["worker-gpu"].get("profiles") == ["gpu"]
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert REQUIRED_SERVICES - {"worker-gpu"} <= default
    for name in default:
        assert set(depends_on(services[name])) <= default, f"{name} waits for a profiled service"


def test_nothing_but_the_gpu_worker_asks_for_a_gpu(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name != "worker-gpu":
            assert "devices" not in str(service.get("deploy", {})), name


def test_app_waits_for_healthy_backends_and_finished_setup(services: dict[str, Any]) -> None:
    assert depends_on(services["migrate"]) == {"postgres": "service_healthy"}
    assert depends_on(services["minio-init"]) == {"minio": "service_healthy"}
    for name in ("api", "worker-cpu", "worker-gpu"):
        assert depends_on(services[name]) == {
            "postgres": "service_healthy",
            "redis": "service_healthy",
            "migrate": "service_completed_successfully",
            "minio-init": "service_completed_successfully",
        }, name


def test_services_waited_on_as_healthy_have_a_healthcheck(services: dict[str, Any]) -> None:
    for name in ("postgres", "redis", "minio", "api"):
        assert services[name]["healthcheck"]["test"], name
    for service in services.values():
        for dependency, condition in depends_on(service).items():
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], dependency


def test_api_healthcheck_asks_healthz_on_the_api_port(services: dict[str, Any]) -> None:
    check = " ".join(services["api"]["healthcheck"]["test"])
    port = parse_shrink_command(services["api"]["command"]).port
    assert f"127.0.0.1:{port}/healthz" in check


def test_one_shot_services_run_once(services: dict[str, Any]) -> None:
    # A restart policy would start them again after exit 0, forever.
    for name in ("migrate", "minio-init"):
        assert services[name].get("restart", "no") == "no", name
    for name in ("api", "worker-cpu", "postgres", "redis", "minio"):
        assert services[name].get("restart") == "unless-stopped", name


def test_minio_init_creates_the_bucket_the_app_uses(services: dict[str, Any]) -> None:
    init = services["minio-init"]
    script = " ".join(init["command"])
    assert "mc mb" in script and "--ignore-existing" in script
    assert environment_of(init)["S3_BUCKET"] == environment_of(services["api"])["SHRINK_S3_BUCKET"]
    # The app's S3 keys are the ones MinIO was started with.
    minio_env = environment_of(services["minio"])
    api_env = environment_of(services["api"])
    assert api_env["SHRINK_S3_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"]
    assert api_env["SHRINK_S3_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]


def test_postgres_credentials_match_the_database_url(services: dict[str, Any]) -> None:
    postgres = environment_of(services["postgres"])
    url = environment_of(services["api"])["SHRINK_DATABASE_URL"]
    user = postgres["POSTGRES_USER"]
    assert url == (
        f"postgresql+psycopg://{user}:{postgres['POSTGRES_PASSWORD']}@postgres:5432/{postgres['POSTGRES_DB']}"
    )


def test_scaled_workers_get_a_work_folder_each(services: dict[str, Any]) -> None:
    data_dir = environment_of(services["worker-cpu"])["SHRINK_DATA_DIR"]
    for name in ("worker-cpu", "worker-gpu"):
        # A bare container path is an anonymous volume: one per replica of `--scale`.
        assert data_dir in services[name]["volumes"], name


# The Compose specification's keys that this file may use; a typo (`depend_on`) is otherwise
# ignored by YAML and only noticed when the stack misbehaves.
SERVICE_KEYS = {
    "build", "command", "container_name", "depends_on", "deploy", "entrypoint", "environment",
    "env_file", "expose", "healthcheck", "image", "init", "labels", "logging", "networks",
    "ports", "profiles", "read_only", "restart", "stop_grace_period", "stop_signal", "tmpfs",
    "ulimits", "user", "volumes", "working_dir",
}  # fmt: skip
HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period", "start_interval"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def test_file_uses_only_keys_compose_knows() -> None:
    compose = load_compose()
    assert set(compose) <= {"name", "services", "volumes", "networks", "configs", "secrets"} | {
        key for key in compose if key.startswith("x-")
    }
    for name, service in compose["services"].items():
        assert set(service) <= SERVICE_KEYS, (name, set(service) - SERVICE_KEYS)
        assert set(service.get("healthcheck", {})) <= HEALTHCHECK_KEYS, name
        assert set(depends_on(service).values()) <= CONDITIONS, name
        assert set(depends_on(service)) <= set(compose["services"]), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith("/") or source in compose["volumes"], (name, volume)
