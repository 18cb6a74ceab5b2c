"""deploy/k8s: manifests, commands, settings, probes, security, GPU placement and autoscaling."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from core.settings import Settings
from tests.ops.shrink_contract import (
    ROOT,
    parse_shrink_command,
    settings_from,
    strip_init,
    unknown_shrink_names,
)
from tests.ops.test_dockerfile import dockerfile_uid

K8S = ROOT / "deploy" / "k8s"
POD_OWNERS = {"Deployment", "Job", "StatefulSet", "DaemonSet"}
QUANTITY_UNITS = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
}


def manifest_files() -> list[Path]:
    return sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")


def load_documents() -> list[dict[str, Any]]:
    documents = []
    for path in manifest_files():
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                documents.append(document)
    return documents


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    return load_documents()


def find(
    documents: list[dict[str, Any]], kind: str, name: str | None = None
) -> list[dict[str, Any]]:
    return [
        doc
        for doc in documents
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]


def one(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(documents, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec(owner: dict[str, Any]) -> dict[str, Any]:
    return owner["spec"]["template"]["spec"]


def pod_owners(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] in POD_OWNERS]


def containers(owner: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(owner)
    return spec.get("initContainers", []) + spec["containers"]


def container_argv(container: dict[str, Any]) -> list[str]:
    # No `command`: the image's ENTRYPOINT (tini) runs `args`.
    command = container.get("command")
    assert command is None or strip_init(command) == [], (
        f"{container['name']}: keep the image's init"
    )
    return strip_init(list(command or []) + list(container.get("args", [])))


def main_args(owner: dict[str, Any]):
    return parse_shrink_command(container_argv(pod_spec(owner)["containers"][0]))


def quantity_bytes(quantity: str | int) -> int:
    text = str(quantity)
    for unit, factor in QUANTITY_UNITS.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def configmap_env(documents: list[dict[str, Any]]) -> dict[str, str]:
    return dict(one(documents, "ConfigMap", "shrink-config")["data"])


def secret_env(documents: list[dict[str, Any]]) -> dict[str, str]:
    return dict(one(documents, "Secret", "shrink-secrets")["stringData"])


def container_env(documents: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """What the container sees: its envFrom sources, then its own env (plain values only)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= one(documents, "ConfigMap", source["configMapRef"]["name"])["data"]
        if "secretRef" in source:
            env |= one(documents, "Secret", source["secretRef"]["name"])["stringData"]
    for variable in container.get("env", []):
        env[variable["name"]] = str(variable.get("value", f"<{variable['name']} from the pod>"))
    return env


def load_kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


FILLED_SECRET_KEY = {"SHRINK_SECRET_KEY": "s" * 48}


def settings_of(documents: list[dict[str, Any]], container: dict[str, Any]) -> Settings:
    """The container's settings once the operator has replaced the placeholder secret key."""
    return settings_from(container_env(documents, container) | FILLED_SECRET_KEY)


def test_every_manifest_parses_with_api_version_kind_and_name(
    documents: list[dict[str, Any]],
) -> None:
    assert len(manifest_files()) >= 8
    for document in documents:
        assert document.get("apiVersion") and document.get("kind"), document
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", document["metadata"]["name"])
        assert "namespace" not in document["metadata"], "kustomization.yaml sets the namespace"


def test_kustomization_lists_every_manifest_in_the_folder() -> None:
    kustomization = load_kustomization()
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    assert set(listed) == {path.name for path in manifest_files()}


def test_kustomization_namespace_is_the_one_it_creates(documents: list[dict[str, Any]]) -> None:
    kustomization = load_kustomization()
    namespaces = find(documents, "Namespace")
    assert [ns["metadata"]["name"] for ns in namespaces] == [kustomization["namespace"]]


def test_every_container_image_is_set_by_the_kustomization(documents: list[dict[str, Any]]) -> None:
    kustomization = load_kustomization()
    images = {image["name"] for image in kustomization["images"]}
    for owner in pod_owners(documents):
        for container in containers(owner):
            assert container["image"] in images, container["image"]


def test_the_expected_workloads_exist(documents: list[dict[str, Any]]) -> None:
    for kind, name in [
        ("Deployment", "shrink-api"),
        ("Service", "shrink-api"),
        ("PodDisruptionBudget", "shrink-api"),
        ("Job", "shrink-migrate"),
        ("Deployment", "shrink-worker-cpu"),
        ("Deployment", "shrink-worker-gpu"),
        ("ConfigMap", "shrink-config"),
        ("Secret", "shrink-secrets"),
        ("ScaledObject", "shrink-worker-cpu"),
        ("ScaledObject", "shrink-worker-gpu"),
    ]:
        one(documents, kind, name)


def test_every_container_runs_a_command_the_shrink_cli_accepts(
    documents: list[dict[str, Any]],
) -> None:
    expected = {
        "shrink-api": "api",
        "shrink-migrate": "migrate",
        "shrink-worker-cpu": "worker",
        "shrink-worker-gpu": "worker",
    }
    owners = pod_owners(documents)
    assert {owner["metadata"]["name"] for owner in owners} == set(expected)
    for owner in owners:
        for container in containers(owner):
            parse_shrink_command(container_argv(container))
        assert main_args(owner).command == expected[owner["metadata"]["name"]]


def test_each_worker_consumes_its_own_queue(documents: list[dict[str, Any]]) -> None:
    assert main_args(one(documents, "Deployment", "shrink-worker-cpu")).queues == "cpu"
    assert main_args(one(documents, "Deployment", "shrink-worker-gpu")).queues == "gpu"


def test_every_shrink_variable_is_a_real_setting(documents: list[dict[str, Any]]) -> None:
    names = set(configmap_env(documents)) | set(secret_env(documents))
    for owner in pod_owners(documents):
        for container in containers(owner):
            names |= {variable["name"] for variable in container.get("env", [])}
    assert len(names) > 10
    assert unknown_shrink_names(names) == set()


def test_example_secret_is_all_placeholders(documents: list[dict[str, Any]]) -> None:
    for secret in find(documents, "Secret"):
        for key, value in secret["stringData"].items():
            assert "REPLACE_ME" in value, (
                f"{secret['metadata']['name']}/{key} looks like a real value"
            )
    assert "EXAMPLE" in (K8S / "secret.example.yaml").read_text()


def test_placeholder_secret_key_cannot_run_in_production(documents: list[dict[str, Any]]) -> None:
    with pytest.raises(ValidationError, match="SHRINK_SECRET_KEY"):
        settings_from(configmap_env(documents) | secret_env(documents))


@pytest.mark.parametrize(
    "workload", ["shrink-api", "shrink-migrate", "shrink-worker-cpu", "shrink-worker-gpu"]
)
def test_container_environment_is_accepted_by_settings_once_the_secret_is_filled(
    documents: list[dict[str, Any]], workload: str
) -> None:
    owner = [doc for doc in pod_owners(documents) if doc["metadata"]["name"] == workload][0]
    settings = settings_of(documents, pod_spec(owner)["containers"][0])
    assert settings.env == "production"
    assert settings.storage_backend == "s3"
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.broker_url.startswith("redis://")


def test_api_probes_liveness_on_healthz_and_readiness_on_readyz(
    documents: list[dict[str, Any]],
) -> None:
    api = one(documents, "Deployment", "shrink-api")
    container = pod_spec(api)["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    listening = main_args(api).port
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        port = container[probe]["httpGet"]["port"]
        assert ports.get(port, port) == listening, probe
    service = one(documents, "Service", "shrink-api")
    target = service["spec"]["ports"][0]["targetPort"]
    assert ports.get(target, target) == listening


def test_service_and_disruption_budget_select_the_api_pods(documents: list[dict[str, Any]]) -> None:
    api = one(documents, "Deployment", "shrink-api")
    labels = api["spec"]["template"]["metadata"]["labels"]
    service = one(documents, "Service", "shrink-api")["spec"]["selector"]
    budget = one(documents, "PodDisruptionBudget", "shrink-api")["spec"]
    assert service.items() <= labels.items()
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    # Selectors must not catch other workloads' pods.
    for owner in pod_owners(documents):
        if owner is not api:
            assert not service.items() <= owner["spec"]["template"]["metadata"]["labels"].items()
    assert 0 < budget["minAvailable"] < api["spec"]["replicas"]


def test_pods_run_non_root_as_the_image_user_without_privileges(
    documents: list[dict[str, Any]],
) -> None:
    uid = dockerfile_uid()
    for owner in pod_owners(documents):
        spec = pod_spec(owner)
        name = owner["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == uid, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        for container in containers(owner):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert not context.get("privileged", False), name


def test_read_only_pods_have_writable_data_work_and_tmp_folders(
    documents: list[dict[str, Any]],
) -> None:
    for owner in pod_owners(documents):
        volumes = {volume["name"]: volume for volume in pod_spec(owner).get("volumes", [])}
        for container in containers(owner):
            settings = settings_of(documents, container)
            mounts = {}
            for mount in container.get("volumeMounts", []):
                assert "emptyDir" in volumes[mount["name"]], mount
                mounts[Path(mount["mountPath"])] = mount
            for needed in (Path("/tmp"), settings.data_dir, settings.resolved_work_dir):
                assert any(needed == path or path in needed.parents for path in mounts), (
                    f"{owner['metadata']['name']}: {needed} is on the read-only root filesystem"
                )


def test_every_container_requests_resources_and_limits_memory(
    documents: list[dict[str, Any]],
) -> None:
    for owner in pod_owners(documents):
        for container in containers(owner):
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), owner["metadata"]["name"]
            assert quantity_bytes(resources["limits"]["memory"]) >= quantity_bytes(
                resources["requests"]["memory"]
            )


@pytest.mark.parametrize("workload", ["shrink-worker-cpu", "shrink-worker-gpu"])
def test_worker_memory_limit_leaves_room_above_the_sandbox(
    documents: list[dict[str, Any]], workload: str
) -> None:
    # The sandbox must fail a greedy job itself, before the kernel kills the whole worker.
    container = pod_spec(one(documents, "Deployment", workload))["containers"][0]
    settings = settings_of(documents, container)
    limit = quantity_bytes(container["resources"]["limits"]["memory"])
    assert settings.sandbox_memory_bytes + 2 * 2**30 <= limit


@pytest.mark.parametrize("workload", ["shrink-worker-cpu", "shrink-worker-gpu"])
def test_workers_may_finish_the_longest_job_before_they_are_killed(
    documents: list[dict[str, Any]], workload: str
) -> None:
    worker = one(documents, "Deployment", workload)
    settings = settings_of(documents, pod_spec(worker)["containers"][0])
    assert settings.job_soft_time_limit_seconds < settings.job_time_limit_seconds
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > settings.job_time_limit_seconds


def test_gpu_worker_asks_for_a_gpu_and_lands_on_gpu_nodes(documents: list[dict[str, Any]]) -> None:
    spec = pod_spec(one(documents, "Deployment", "shrink-worker-gpu"))
    resources = spec["containers"][0]["resources"]
    assert int(resources["limits"]["nvidia.com/gpu"]) >= 1
    assert spec["nodeSelector"]
    assert any(
        toleration["key"] == "nvidia.com/gpu" and toleration["effect"] == "NoSchedule"
        for toleration in spec["tolerations"]
    )
    cpu_spec = pod_spec(one(documents, "Deployment", "shrink-worker-cpu"))
    assert "nvidia.com/gpu" not in str(cpu_spec["containers"][0]["resources"])
    # Distinct image names, not tags: an overlay setting `shrink` must not retag the GPU worker.
    kustomization = load_kustomization()
    images = {image["name"]: image for image in kustomization["images"]}
    gpu_image, cpu_image = spec["containers"][0]["image"], cpu_spec["containers"][0]["image"]
    assert gpu_image != cpu_image
    assert images[gpu_image].get("newName", gpu_image) != images[cpu_image].get(
        "newName", cpu_image
    )


def test_workers_scale_on_the_redis_list_of_their_own_queue(
    documents: list[dict[str, Any]],
) -> None:
    scaled = find(documents, "ScaledObject")
    targets = {obj["spec"]["scaleTargetRef"]["name"] for obj in scaled}
    assert targets == {"shrink-worker-cpu", "shrink-worker-gpu"}
    for scaled_object in scaled:
        spec = scaled_object["spec"]
        worker = one(documents, "Deployment", spec["scaleTargetRef"]["name"])
        assert "replicas" not in worker["spec"], "KEDA owns replicas; apply would reset them"
        queue = main_args(worker).queues
        assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "redis"
        metadata = trigger["metadata"]
        assert metadata["listName"] == queue
        assert all(isinstance(value, str) for value in metadata.values()), (
            "KEDA metadata are strings"
        )
        assert int(metadata["listLength"]) >= 1
        assert re.fullmatch(r"[^:/]+:\d+", metadata["address"]), "KEDA wants host:port"
        authentication = one(
            documents, "TriggerAuthentication", trigger["authenticationRef"]["name"]
        )
        for reference in authentication["spec"]["secretTargetRef"]:
            secret = one(documents, "Secret", reference["name"])
            assert reference["key"] in secret["stringData"]
    gpu = one(documents, "ScaledObject", "shrink-worker-gpu")["spec"]
    assert gpu["minReplicaCount"] == 0, "idle GPUs cost money: scale the GPU workers to zero"


def test_migrate_job_retries_and_cleans_up(documents: list[dict[str, Any]]) -> None:
    job = one(documents, "Job", "shrink-migrate")
    assert pod_spec(job)["restartPolicy"] in {"OnFailure", "Never"}
    assert job["spec"]["backoffLimit"] >= 1
    assert job["spec"]["ttlSecondsAfterFinished"] > 0


def test_configmap_holds_no_secrets(documents: list[dict[str, Any]]) -> None:
    secret_names = {
        "SHRINK_SECRET_KEY",
        "SHRINK_DATABASE_URL",
        "SHRINK_BROKER_URL",
        "SHRINK_S3_ACCESS_KEY_ID",
        "SHRINK_S3_SECRET_ACCESS_KEY",
    }
    assert not secret_names & set(configmap_env(documents))
    assert secret_names <= set(secret_env(documents))
    assert set(Settings.model_fields) >= {"secret_key", "database_url", "broker_url"}


CONTAINER_KEYS = {
    "name", "image", "imagePullPolicy", "command", "args", "env", "envFrom", "ports", "resources",
    "securityContext", "volumeMounts", "livenessProbe", "readinessProbe", "startupProbe",
    "lifecycle", "workingDir",
}  # fmt: skip


def test_containers_use_only_keys_kubernetes_knows(documents: list[dict[str, Any]]) -> None:
    # A misspelt key (`readinesProbe`) is dropped by a lenient apply and the probe never runs.
    for owner in pod_owners(documents):
        for container in containers(owner):
            assert set(container) <= CONTAINER_KEYS, set(container) - CONTAINER_KEYS
            mounts = {mount["name"] for mount in container.get("volumeMounts", [])}
            volumes = {volume["name"] for volume in pod_spec(owner).get("volumes", [])}
            assert mounts <= volumes, owner["metadata"]["name"]
