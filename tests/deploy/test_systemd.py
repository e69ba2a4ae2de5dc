"""deploy/worker.service and worker-migrate.service: hardened, a dedicated user, separate
credentials, the baked MessageDB package; `systemd-analyze verify` and an exposure of "OK" or
better from `systemd-analyze security`, where systemd-analyze is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

from tests.deploy._files import NODE_EXPORTER_PORT, UNITS, environment, resource, unavailable, unit

if TYPE_CHECKING:
    from pathlib import Path

WORKER, MIGRATE = UNITS
BINARY = "/opt/worker/.venv/bin/worker"
# systemd-analyze security grades exposure from 0 to 10 and names it SAFE, OK, MEDIUM, EXPOSED
# or UNSAFE; these units are to stay under 2.
MOST_EXPOSURE = 2.0

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "RestrictSUIDSGID": "yes",
    "RestrictNamespaces": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
}


def service(path: Path) -> dict[str, list[str]]:
    return unit(path)["Service"]


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_hardened_with_a_dedicated_user(path: Path) -> None:
    settings = service(path)
    for key, value in HARDENING.items():
        assert settings.get(key) == [value], f"{path.name}: {key}={settings.get(key)}"
    assert settings["DynamicUser"] == ["yes"]
    assert settings["User"][0] not in ("root", "0")
    assert settings["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_installs_from_the_baked_package(path: Path) -> None:
    settings = service(path)
    env = environment(settings["Environment"])
    assert env["WORKER_MESSAGE_DB__PACKAGE_PATH"].startswith("/opt/worker/")
    assert not any("npm" in line for line in settings.get("ExecStartPre", []))


def test_install_and_run_use_separate_credentials() -> None:
    migrate, run = service(MIGRATE), service(WORKER)
    assert migrate["ExecStart"] == [f"{BINARY} db install"]
    assert migrate["Type"] == ["oneshot"]
    assert run["ExecStart"] == [f"{BINARY} run"]
    assert "ExecStartPre" not in run, "the install runs in worker-migrate.service, as the owner"
    assert migrate["EnvironmentFile"] != run["EnvironmentFile"]
    assert MIGRATE.name in unit(WORKER)["Unit"]["Wants"][0].split()
    assert MIGRATE.name in unit(WORKER)["Unit"]["After"][0].split()


def test_stop_timeout_exceeds_the_shutdown_deadline_and_port() -> None:
    settings = service(WORKER)
    env = environment(settings["Environment"])
    assert settings["Type"] == ["notify"]
    assert settings["WatchdogSec"] == ["30s"]  # the worker sends WATCHDOG=1 every 15 s
    (timeout,) = settings["TimeoutStopSec"]
    assert float(timeout) >= float(env["WORKER_WORKER__SHUTDOWN_DEADLINE"]) + 5
    port = int(env["WORKER_WORKER__HTTP_PORT"])
    assert port != NODE_EXPORTER_PORT
    worker = resource("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert port == worker["ports"][0]["containerPort"], "one port in every deployment"


def _analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        unavailable("systemd-analyze is not installed")
    assert found is not None
    return found


def _stand_ins(tmp_path: Path) -> list[Path]:
    """Copies of the units whose ExecStart binary exists: `verify` checks that it does, and the
    virtualenv is not installed here. A stub at a path of the same form stands in for it."""
    stub = tmp_path / "opt" / "bin" / "worker"
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    copies = []
    for path in UNITS:
        copy = tmp_path / path.name
        copy.write_text(path.read_text().replace(BINARY, str(stub)))
        copies.append(copy)
    return copies


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = _analyze()
    copies = _stand_ins(tmp_path)
    result = subprocess.run(
        [analyze, "verify", *map(str, copies)],
        capture_output=True,
        text=True,
        check=False,
        # worker.service wants worker-migrate.service: found beside it, then in systemd's paths.
        env={"SYSTEMD_UNIT_PATH": f"{tmp_path}:", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # unknown keys are only warned about


@pytest.mark.parametrize("name", [p.name for p in UNITS])
def test_systemd_analyze_security(tmp_path: Path, name: str) -> None:
    analyze = _analyze()
    copy = next(c for c in _stand_ins(tmp_path) if c.name == name)
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found[1]) < MOST_EXPOSURE, f"{name}: {found[1]} {found[2]}"
    assert found[2] in ("OK", "SAFE")
