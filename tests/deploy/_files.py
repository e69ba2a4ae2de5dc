"""Readers for the deployment files: the Kubernetes objects (the kustomize base, rendered),
systemd units, the Containerfile."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUSTOMIZE_BASE = DEPLOY / "kubernetes"
CONTAINERFILE = DEPLOY / "Containerfile"
UNITS = (DEPLOY / "worker.service", DEPLOY / "worker-migrate.service")

# node_exporter's port: the worker's HTTP port must not be it.
NODE_EXPORTER_PORT = 9100


def unavailable(reason: str) -> None:
    """Skip a check whose tool is missing, or fail it where WORKER_DEPLOY_CHECKS=required (CI)."""
    if os.environ.get("WORKER_DEPLOY_CHECKS") == "required":
        pytest.fail(f"{reason} (WORKER_DEPLOY_CHECKS=required)")
    pytest.skip(reason)


# The base uses `replacements` (kustomize 4.1) and `labels` with `includeTemplates` (kustomize
# 5.0, in kubectl 1.27).
KUSTOMIZE_AT_LEAST = (5, 0)


def kustomize_command() -> list[str] | None:
    """How to render a kustomization here: `kustomize build`, else `kubectl kustomize` (kubectl
    has kustomize built in), else None."""
    if found := shutil.which("kustomize"):
        return [found, "build"]
    if found := shutil.which("kubectl"):
        return [found, "kustomize"]
    return None


def kustomize_version(command: list[str]) -> tuple[int, ...] | None:
    """The version of kustomize that ``command`` runs (None when it does not say)."""
    ask = [command[0], "version"] + ([] if command[1] == "build" else ["--client"])
    done = subprocess.run(ask, capture_output=True, text=True, timeout=60, check=False)
    pattern = r"v(\d+)\.(\d+)" if command[1] == "build" else r"Kustomize Version: v(\d+)\.(\d+)"
    found = re.search(pattern, done.stdout)
    return tuple(int(part) for part in found.groups()) if found else None


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects a kustomization renders to; fails the test with kustomize's message."""
    return _render(str(directory))


@functools.cache
def _render(directory: str) -> list[dict[str, Any]]:
    command = kustomize_command()
    if command is None:
        unavailable("neither kustomize nor kubectl is installed")
    assert command is not None
    version = kustomize_version(command)
    if version is None or version < KUSTOMIZE_AT_LEAST:
        unavailable(
            f"{' '.join(command)} runs kustomize {version}: 5.0 or later is needed "
            "(kubectl 1.27 or later)"
        )
    done = subprocess.run(
        [*command, directory], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{' '.join(command)} {directory}: {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def manifest() -> list[dict[str, Any]]:
    """The base's objects, rendered with its default values."""
    return render(KUSTOMIZE_BASE)


def resource(kind: str, objects: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    found = [doc for doc in (manifest() if objects is None else objects) if doc["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects rendered"
    return found[0]


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file: section -> key -> every value given, in order (an empty value, as
    in ``CapabilityBoundingSet=``, is kept as ``""``)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{path.name}:{number}: continuation lines not expected"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{path.name}:{number}: a key outside any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}:{number}: not key=value"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def environment(values: list[str]) -> dict[str, str]:
    """``Environment=`` lines of a unit as one mapping (single ``K=V`` per line here)."""
    found = {}
    for value in values:
        for item in value.split():
            key, _, val = item.partition("=")
            found[key] = val.strip('"')
    return found


@dataclass
class Stage:
    """One ``FROM`` stage of the Containerfile: its base, name and instructions."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


def containerfile() -> tuple[list[tuple[str, str]], list[Stage]]:
    """The instructions before the first FROM, and the stages."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    preamble: list[tuple[str, str]] = []
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif stages:
            stages[-1].instructions.append((instruction, args.strip()))
        else:
            preamble.append((instruction, args.strip()))
    return preamble, stages
