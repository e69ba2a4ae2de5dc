"""Readers for the deployment files: the Kubernetes manifest, systemd units, the Containerfile."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MANIFEST = DEPLOY / "kubernetes.yaml"
CONTAINERFILE = DEPLOY / "Containerfile"
UNITS = (DEPLOY / "worker.service", DEPLOY / "worker-migrate.service")

# node_exporter's port: the worker's HTTP port must not be it.
NODE_EXPORTER_PORT = 9100


def unavailable(reason: str) -> None:
    """Skip a check whose tool is missing, or fail it where WORKER_DEPLOY_CHECKS=required (CI)."""
    if os.environ.get("WORKER_DEPLOY_CHECKS") == "required":
        pytest.fail(f"{reason} (WORKER_DEPLOY_CHECKS=required)")
    pytest.skip(reason)


def manifest() -> list[dict[str, Any]]:
    """The manifest's documents."""
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]


def resource(kind: str) -> dict[str, Any]:
    found = [doc for doc in manifest() if doc["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} resources in {MANIFEST.name}"
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
