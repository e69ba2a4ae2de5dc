"""deploy/kubernetes.yaml: least privilege, pinned image, separate Secrets, probes, disruption
budget, a grace period longer than the shutdown deadline; and valid against the API's schemas."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.deploy._files import MANIFEST, NODE_EXPORTER_PORT, containerfile, resource, unavailable

DEFAULT_SHUTDOWN_DEADLINE = 10.0


def pod() -> dict[str, Any]:
    spec: dict[str, Any] = resource("Deployment")["spec"]["template"]["spec"]
    return spec


def containers() -> list[dict[str, Any]]:
    spec = pod()
    return [*spec.get("initContainers", []), *spec["containers"]]


def worker() -> dict[str, Any]:
    (found,) = [c for c in pod()["containers"] if c["name"] == "worker"]
    return found


def env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}


def secrets(container: dict[str, Any]) -> set[str]:
    named = {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
    for item in container.get("env", []):
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            named.add(ref["name"])
    return named


def test_runs_as_non_root_without_privileges() -> None:
    spec = pod()
    security = spec["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] > 0 and security["runAsGroup"] > 0
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    for container in containers():
        own = container["securityContext"]
        assert own["allowPrivilegeEscalation"] is False, container["name"]
        assert own["readOnlyRootFilesystem"] is True, container["name"]
        assert own.get("privileged", False) is False, container["name"]
        assert own["capabilities"]["drop"] == ["ALL"], container["name"]
        assert not own["capabilities"].get("add"), container["name"]
        assert own.get("runAsUser", security["runAsUser"]) != 0, container["name"]


def test_the_user_is_the_images() -> None:
    _, stages = containerfile()
    (user,) = stages[-1].all("USER")
    security = pod()["securityContext"]
    assert f"{security['runAsUser']}:{security['runAsGroup']}" == user


def test_a_writable_tmp_beside_the_read_only_root() -> None:
    volumes = {v["name"]: v for v in pod()["volumes"]}
    for container in containers():
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        assert "emptyDir" in volumes[mounts["/tmp"]], container["name"]


def test_every_container_has_requests_and_a_memory_limit() -> None:
    for container in containers():
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys(), container["name"]
        assert "memory" in resources["limits"], container["name"]


def test_one_pinned_image() -> None:
    images = {c["image"] for c in containers()}
    assert len(images) == 1, images
    (image,) = images
    name, _, tag = image.rpartition(":")
    assert "@sha256:" in image or (name and tag and tag != "latest"), image
    for container in containers():
        assert container.get("imagePullPolicy") != "Always", container["name"]


def test_the_init_container_migrates_with_a_secret_of_its_own() -> None:
    (init,) = pod()["initContainers"]
    assert [*init.get("command", []), *init["args"]][-2:] == ["db", "install"]
    assert worker()["args"] == ["run"]
    assert secrets(init) and secrets(worker()), "both need credentials"
    assert not secrets(init) & secrets(worker()), "the owner's and the runtime role's Secrets"


def test_grace_period_exceeds_the_shutdown_deadline() -> None:
    named = env(worker()).get("WORKER_WORKER__SHUTDOWN_DEADLINE")
    deadline = DEFAULT_SHUTDOWN_DEADLINE if named is None else float(named)
    grace = pod()["terminationGracePeriodSeconds"]
    # Room after the deadline to commit, release the leases and exit.
    assert grace >= deadline + 5, (grace, deadline)


def test_probes_and_metrics_on_the_workers_port() -> None:
    container = worker()
    port = int(env(container)["WORKER_WORKER__HTTP_PORT"])
    assert port != NODE_EXPORTER_PORT
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named["http"] == port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["port"] == "http"
    annotations = resource("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    _, stages = containerfile()
    assert stages[-1].all("EXPOSE") == [str(port)]


def test_disruption_budget_covers_the_pods() -> None:
    deployment = resource("Deployment")
    budget = resource("PodDisruptionBudget")
    assert budget["apiVersion"] == "policy/v1"
    selector = budget["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert deployment["spec"]["replicas"] >= 2
    assert (
        budget["spec"].get("maxUnavailable", 0) >= 1
        or budget["spec"]["minAvailable"] < (deployment["spec"]["replicas"])
    )


def _validator() -> str | None:
    beside = Path(sys.executable).with_name("kubernetes-validate")
    return str(beside) if beside.exists() else shutil.which("kubernetes-validate")


def test_valid_against_the_kubernetes_schemas_strictly() -> None:
    validator = _validator()
    if validator is None:
        unavailable("kubernetes-validate is not installed (pip install -e '.[dev]')")
        return
    result = subprocess.run(
        [validator, "--strict", str(MANIFEST)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed for resource deployment/" in result.stdout
    assert "passed for resource poddisruptionbudget/" in result.stdout
