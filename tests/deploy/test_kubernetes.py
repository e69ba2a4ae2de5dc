"""deploy/kubernetes (a kustomize base), rendered with its defaults and through an overlay with
other values: the migration as a Job with the owner's Secret alone, worker pods with the
runtime role's alone, least privilege, the image by tag or digest, replicas equal to the group
size, spread over nodes, probes, a Service and a PodMonitor that reach every pod, a disruption
budget, a grace period longer than the shutdown deadline; and valid against the API's schemas."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.deploy._files import (
    KUSTOMIZE_BASE,
    NODE_EXPORTER_PORT,
    containerfile,
    manifest,
    render,
    resource,
    unavailable,
)
from tests.docs.snippets import ROOT, blocks

if TYPE_CHECKING:
    from collections.abc import Iterator

DEFAULT_SHUTDOWN_DEADLINE = 10.0
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
DOCS = ROOT / "docs" / "kubernetes.md"
# The overlay docs/kubernetes.md shows, rendered from where it says it lives.
OVERLAY_HOME = Path("deploy/overlays/production")
OVERLAY_GROUP_SIZE = 4
OVERLAY_IMAGE = re.compile(r"registry\.example\.com/shop/projection-worker@sha256:[0-9a-f]{64}")
KINDS = {"Job", "Deployment", "PodDisruptionBudget", "Service", "PodMonitor", "PrometheusRule"}
# Kinds of the Prometheus operator: kubernetes-validate has no schema for them
# (tests/deploy/test_alerts.py checks them).
OPERATOR_KINDS = {"PodMonitor", "PrometheusRule"}

Objects = list[dict[str, Any]]


def docs_overlay() -> str:
    (block,) = [
        b for b in blocks(DOCS) if b.marker == "file" and b.argument == "kustomization.yaml"
    ]
    return block.code


@pytest.fixture(scope="module")
def overlay(tmp_path_factory: pytest.TempPathFactory) -> Objects:
    """The docs' overlay, in a repository laid out as it says, with this base as its base."""
    root = tmp_path_factory.mktemp("repository")
    (root / "deploy").mkdir()
    (root / "deploy" / "kubernetes").symlink_to(KUSTOMIZE_BASE, target_is_directory=True)
    home = root / OVERLAY_HOME
    home.mkdir(parents=True)
    (home / "kustomization.yaml").write_text(docs_overlay())
    return render(home)


@pytest.fixture(params=["defaults", "overlay"])
def objects(request: pytest.FixtureRequest) -> Objects:
    """The objects of the base as it is, and through the docs' overlay."""
    if request.param == "defaults":
        return manifest()
    found: Objects = request.getfixturevalue("overlay")
    return found


def pod_specs(objects: Objects) -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("Deployment", "Job"):
        yield kind, resource(kind, objects)["spec"]["template"]["spec"]


def containers(objects: Objects) -> list[dict[str, Any]]:
    return [
        container
        for _, spec in pod_specs(objects)
        for container in [*spec.get("initContainers", []), *spec["containers"]]
    ]


def worker(objects: Objects) -> dict[str, Any]:
    (found,) = resource("Deployment", objects)["spec"]["template"]["spec"]["containers"]
    assert found["name"] == "worker"
    return dict(found)


def env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}


def secrets(spec: dict[str, Any]) -> set[str]:
    """Every Secret a pod spec names: envFrom, env's secretKeyRef, volumes."""
    named = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        named |= {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                named.add(ref["name"])
    return named


def pod_labels(kind: str, objects: Objects) -> dict[str, str]:
    labels: dict[str, str] = resource(kind, objects)["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_the_objects_rendered(objects: Objects) -> None:
    assert {doc["kind"] for doc in objects} == KINDS
    assert len(objects) == len(KINDS), [doc["kind"] for doc in objects]


def test_the_overlay_sets_its_namespace_on_everything(overlay: Objects) -> None:
    assert {doc["metadata"].get("namespace") for doc in overlay} == {"shop"}
    assert {doc["metadata"].get("namespace") for doc in manifest()} == {None}


def test_replicas_follow_the_group_size_one_member_a_pod(overlay: Objects) -> None:
    """Two by default, the overlay's 4 through it; a pod holds one member of each group, so
    the replicas hold every member and each does an equal share."""
    for objects, size in ((manifest(), 2), (overlay, OVERLAY_GROUP_SIZE)):
        assert resource("Deployment", objects)["spec"]["replicas"] == size
        assert env(worker(objects))["WORKER_WORKER__MAX_GROUP_SLOTS"] == "1"


def test_the_migration_is_a_job_with_the_owners_secret_alone(objects: Objects) -> None:
    job = resource("Job", objects)
    spec = job["spec"]["template"]["spec"]
    (migrate,) = spec["containers"]
    assert [*migrate.get("command", []), *migrate["args"]][-2:] == ["db", "install"]
    assert spec["restartPolicy"] in ("Never", "OnFailure")
    assert job["spec"]["backoffLimit"] >= 1
    assert secrets(spec) == {"projection-worker-migrate"}


def test_worker_pods_get_the_runtime_roles_secret_alone(objects: Objects) -> None:
    spec = resource("Deployment", objects)["spec"]["template"]["spec"]
    assert not spec.get("initContainers"), "the migration runs in its Job, not in every replica"
    assert worker(objects)["args"] == ["run"]
    assert secrets(spec) == {"projection-worker-runtime"}


def test_runs_as_non_root_without_privileges(objects: Objects) -> None:
    for kind, spec in pod_specs(objects):
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True, kind
        assert security["runAsUser"] > 0 and security["runAsGroup"] > 0, kind
        assert security["seccompProfile"]["type"] == "RuntimeDefault", kind
        assert spec["automountServiceAccountToken"] is False, kind
        for container in spec["containers"]:
            own = container["securityContext"]
            assert own["allowPrivilegeEscalation"] is False, container["name"]
            assert own["readOnlyRootFilesystem"] is True, container["name"]
            assert own.get("privileged", False) is False, container["name"]
            assert own["capabilities"]["drop"] == ["ALL"], container["name"]
            assert not own["capabilities"].get("add"), container["name"]
            assert own.get("runAsUser", security["runAsUser"]) != 0, container["name"]


def test_the_user_is_the_images(objects: Objects) -> None:
    _, stages = containerfile()
    (user,) = stages[-1].all("USER")
    for _, spec in pod_specs(objects):
        security = spec["securityContext"]
        assert f"{security['runAsUser']}:{security['runAsGroup']}" == user


def test_a_writable_tmp_beside_the_read_only_root(objects: Objects) -> None:
    for _, spec in pod_specs(objects):
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]], container["name"]


def test_every_container_has_requests_and_a_memory_limit(objects: Objects) -> None:
    for container in containers(objects):
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys(), container["name"]
        assert "memory" in resources["limits"], container["name"]


def test_one_image_by_the_packages_version_or_by_digest(overlay: Objects) -> None:
    """The base names projection-worker:VERSION; the overlay, its registry's image by digest
    (kustomize's `images`), in the Job and the Deployment alike."""
    assert {c["image"] for c in containers(manifest())} == {f"projection-worker:{VERSION}"}
    (image,) = {c["image"] for c in containers(overlay)}
    assert OVERLAY_IMAGE.fullmatch(image), image
    for container in containers(overlay):
        assert container.get("imagePullPolicy") != "Always", container["name"]


def test_grace_period_exceeds_the_shutdown_deadline(objects: Objects) -> None:
    named = env(worker(objects)).get("WORKER_WORKER__SHUTDOWN_DEADLINE")
    deadline = DEFAULT_SHUTDOWN_DEADLINE if named is None else float(named)
    grace = resource("Deployment", objects)["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    # Room after the deadline to commit, release the leases and exit.
    assert grace >= deadline + 5, (grace, deadline)


def test_pods_spread_over_nodes(objects: Objects) -> None:
    spec = resource("Deployment", objects)["spec"]["template"]["spec"]
    labels = pod_labels("Deployment", objects)
    by_key = {c["topologyKey"]: c for c in spec["topologySpreadConstraints"]}
    nodes = by_key["kubernetes.io/hostname"]
    assert nodes["maxSkew"] == 1
    assert selects(nodes["labelSelector"]["matchLabels"], labels)
    assert "pod-template-hash" in nodes.get("matchLabelKeys", [])


def test_probes_and_metrics_on_the_workers_port(objects: Objects) -> None:
    container = worker(objects)
    port = int(env(container)["WORKER_WORKER__HTTP_PORT"])
    assert port != NODE_EXPORTER_PORT
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named["http"] == port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    _, stages = containerfile()
    assert stages[-1].all("EXPOSE") == [str(port)]


def test_the_service_and_pod_monitor_reach_every_worker_pod_and_no_job_pod(
    objects: Objects,
) -> None:
    """Both select the worker's pods (not the migration's); the Service lists unready pods too
    and the PodMonitor scrapes pods themselves, so an unready pod's metrics are still read."""
    workers, migration = pod_labels("Deployment", objects), pod_labels("Job", objects)
    service = resource("Service", objects)["spec"]
    monitor = resource("PodMonitor", objects)["spec"]
    budget = resource("PodDisruptionBudget", objects)["spec"]
    deployment = resource("Deployment", objects)["spec"]
    selectors = {
        "Service": service["selector"],
        "PodMonitor": monitor["selector"]["matchLabels"],
        "PodDisruptionBudget": budget["selector"]["matchLabels"],
        "Deployment": deployment["selector"]["matchLabels"],
    }
    for kind, selector in selectors.items():
        assert selects(selector, workers), kind
        assert not selects(selector, migration), f"{kind} selects the migration's pod"
    assert service["publishNotReadyAddresses"] is True
    (port,) = service["ports"]
    assert port["targetPort"] == "http"
    (endpoint,) = monitor["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")


def test_disruption_budget_leaves_a_standby(objects: Objects) -> None:
    budget = resource("PodDisruptionBudget", objects)
    assert budget["apiVersion"] == "policy/v1"
    assert resource("Deployment", objects)["spec"]["replicas"] >= 2
    assert budget["spec"]["maxUnavailable"] == 1


def _validator() -> str | None:
    beside = Path(sys.executable).with_name("kubernetes-validate")
    return str(beside) if beside.exists() else shutil.which("kubernetes-validate")


def test_valid_against_the_kubernetes_schemas_strictly(objects: Objects, tmp_path: Path) -> None:
    """Every object of a kind the API server knows, with unknown fields refused."""
    validator = _validator()
    if validator is None:
        unavailable("kubernetes-validate is not installed (pip install -e '.[dev]')")
        return
    known = [doc for doc in objects if doc["kind"] not in OPERATOR_KINDS]
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(known))
    result = subprocess.run(
        [validator, "--strict", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for doc in known:
        passed = f"passed for resource {doc['kind'].lower()}/{doc['metadata']['name']}"
        assert passed in result.stdout, result.stdout
