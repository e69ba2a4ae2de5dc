"""Configuration: ``domain.toml`` overlaid by ``WORKER_*`` environment variables.

Nested keys use ``__``: ``WORKER_EVENT_STORE__DATABASE_URI`` overrides
``[event_store] database_uri``. Relative paths are taken from the config file's folder.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from worker.engine.settings import EngineSettings
from worker.errors import ConfigurationError
from worker.store.conventions import ConventionsName  # noqa: TC001  (pydantic needs it)
from worker.store.database import Database, redact

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_CONFIG = Path("domain.toml")
CONFIG_ENV = "WORKER_CONFIG"
ENV_PREFIX = "WORKER_"

# The WORKER_* variables the project reads that are not settings: which config file to load,
# the test suite's switches (tests/deploy, tests/interop) and the image scripts' (deploy/).
# Any other WORKER_* variable that is not a setting is refused (see ``check_environment``).
OTHER_VARIABLES = frozenset(
    {
        CONFIG_ENV,
        "WORKER_DEPLOY_CHECKS",
        "WORKER_BROWSER_CHECKS",
        "WORKER_PROTEAN_CHECKS",
        "WORKER_IMAGE_CACHE",
        "WORKER_IMAGE_STORE_LIMIT_MB",
    }
)

# What Kubernetes puts in every container of a namespace for each Service whose name starts
# with `worker` (service links: `WORKER_SERVICE_HOST`, `WORKER_PORT_8000_TCP_ADDR`, ...).
_SERVICE_LINK = re.compile(
    r"WORKER(_[A-Z0-9_]+)?_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?)"
)

_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "worker_config_file", default=None
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DomainSettings(_Section):
    """``[domain]``: the application's modules and write-side defaults."""

    name: str = "domain"
    modules: list[str] = Field(default_factory=list)
    snapshot_threshold: int = Field(default=10, ge=1)
    instance: str | None = None
    # How messages are named and laid out (worker.store.conventions); unset: the Domain's own.
    conventions: ConventionsName | None = None


class EventStoreSettings(_Section):
    """``[event_store]``: where MessageDB lives."""

    provider: Literal["message_db"] = "message_db"
    database_uri: SecretStr | None = None
    embedded_data_dir: Path = Path(".worker/postgres")
    notify_trigger: bool = True
    connect_timeout: float = Field(default=10.0, gt=0)

    @field_validator("database_uri")
    @classmethod
    def _known_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value().strip()
        if text in ("", "embedded"):
            return value
        if not text.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "must be a postgresql://user@host:port/database URI or the word 'embedded'"
            )
        _check_ports(text)
        return value

    def dsn(self) -> str | None:
        """The configured DSN in clear (never log it: use ``database.redact``)."""
        return None if self.database_uri is None else self.database_uri.get_secret_value()


def _check_ports(uri: str) -> None:
    """Every port a URI names (``host:port``, several hosts, ``?port=``) must be a number."""
    parts = urlsplit(uri)
    ports = []
    for host in parts.netloc.rpartition("@")[2].split(","):
        rest = host.partition("]")[2] if host.startswith("[") else host
        ports.append(rest.partition(":")[2])
    for listed in parse_qs(parts.query).get("port", []):
        ports.extend(listed.split(","))
    for port in ports:
        if port and not port.isdigit():
            raise ValueError(f"port {port!r} is not a number")


class MessageDBSettings(_Section):
    """``[message_db]``: which MessageDB release to install and where to find it."""

    version: str = "1.3.1"
    package_path: Path | None = None
    cache_dir: Path | None = None


class WorkerSettings(EngineSettings):
    """``[worker]``: the engine's knobs, the probes' address and the logs."""

    http_host: str = "0.0.0.0"
    http_port: int | None = Field(default=None, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    gc_threshold: int = Field(default=10_000, ge=0)  # see worker.ops.collector
    # Seconds a consumer may be without its database before /readyz says not ready.
    unready_after: float = Field(default=30.0, ge=0)


class TelemetrySettings(_Section):
    """``[telemetry]``: OpenTelemetry traces (and metrics) over OTLP or to the console; needs
    the ``telemetry`` extra. The standard ``OTEL_*`` variables, where set, win over these keys
    (see ``worker.ops.telemetry``)."""

    enabled: bool = False
    service_name: str = "worker"
    exporter: Literal["otlp", "console"] = "otlp"
    # otlp: the collector's base URL (OTLP/HTTP, e.g. http://127.0.0.1:4318; /v1/traces and
    # /v1/metrics are appended); console: a file to append spans to (unset: standard output).
    endpoint: str | None = None
    resource_attributes: dict[str, str] = Field(default_factory=dict)
    metrics: bool = False  # the metrics of /metrics, exported over OTLP too
    metrics_interval: float = Field(default=60.0, gt=0)  # seconds between metric exports


class ConsoleSettings(_Section):
    """``[console]``: the operators' web console (``worker console``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8800, ge=0, le=65535)
    # Needed for every action, and to listen on any address but the loopback one; set it from
    # the environment (WORKER_CONSOLE__TOKEN), never in the file.
    token: SecretStr | None = None
    operator: str = "operator"  # who the action log lines name beside the remote address
    refresh: float = Field(default=2.0, gt=0)  # seconds between the pages' live updates


class Settings(BaseSettings):
    """Everything configurable, validated once at start."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    domain: DomainSettings = DomainSettings()
    event_store: EventStoreSettings = EventStoreSettings()
    message_db: MessageDBSettings = MessageDBSettings()
    worker: WorkerSettings = WorkerSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    console: ConsoleSettings = ConsoleSettings()
    config_file: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _config_file.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    def database(self, target: str | Database) -> Database:
        """How to connect to ``target`` (a DSN) as these settings ask: ``[event_store]
        connect_timeout`` and ``[worker] read_model_schema``; a ``Database`` as it is."""
        if isinstance(target, Database):
            return target
        return Database(target, self.event_store.connect_timeout, self.worker.read_model_schema)


def _config_path(path: Path | None) -> Path | None:
    if path is not None:
        if not path.is_file():
            raise ConfigurationError(f"config file {path} does not exist")
        return path
    named = os.environ.get(CONFIG_ENV)
    if named:
        if not Path(named).is_file():
            raise ConfigurationError(f"config file {named} (from {CONFIG_ENV}) does not exist")
        return Path(named)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def where_looked() -> str:
    """Where ``load_settings`` looks for a config file when none is given, for an error."""
    return f"{Path.cwd() / DEFAULT_CONFIG} (and ${CONFIG_ENV} is unset)"


def _sections() -> dict[str, type[BaseModel]]:
    return {
        name: field.annotation
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }


def _places(location: tuple[Any, ...]) -> list[tuple[str, str]]:
    """(how to write it, key) of every known key that an unknown one at ``location`` may be:
    its own section's keys first, then every section's."""
    sections = _sections()
    everywhere = [(f"[{s}] {f}", f) for s, cls in sections.items() for f in cls.model_fields]
    if len(location) == 1:  # the top level of the file: a key outside its section, or a section
        return everywhere + [(f"[{s}]", s) for s in sections]
    section = str(location[0])
    if len(location) == 2 and section in sections:
        return [(f, f) for f in sections[section].model_fields] + everywhere
    return []


def _suggestion(location: tuple[Any, ...]) -> str:
    """For an unknown key: the known key it most likely is (the same, or a close spelling)."""
    key = str(location[-1])
    places = _places(location)
    names = [name for _, name in places]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.75)
    meant = key if key in names else next(iter(close), None)
    found = [place for place, name in places if name == meant]
    return f" (did you mean `{found[0]}`?)" if found else ""


def _describe(error: ValidationError, where: str) -> str:
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        hint = _suggestion(item["loc"]) if item["type"] == "extra_forbidden" else ""
        problems.append(f"{location}: {item['msg']}{hint}")
    return f"invalid configuration ({where}): " + "; ".join(problems)


def setting_variables() -> list[str]:
    """Every variable that sets something: ``WORKER_SECTION__KEY``, and ``WORKER_SECTION``
    (a JSON object of the section's keys)."""
    names = []
    for section, cls in _sections().items():
        names.append(f"{ENV_PREFIX}{section}".upper())
        names.extend(f"{ENV_PREFIX}{section}__{key}".upper() for key in cls.model_fields)
    return names


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse ``WORKER_*`` variables that are neither settings nor ``OTHER_VARIABLES``, as
    unknown keys of the file are: the settings would ignore them silently (names are not
    case-sensitive)."""
    known = setting_variables() + sorted(OTHER_VARIABLES)
    unknown = sorted(
        name
        for name in environ
        if name.upper().startswith(ENV_PREFIX)
        and name.upper() not in known
        and not _SERVICE_LINK.fullmatch(name)
    )
    if not unknown:
        return
    problems = []
    for name in unknown:
        close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.8)
        hint = f" (did you mean `{close[0]}`?)" if close else ""
        problems.append(f"unknown environment variable {name}{hint}")
    raise ConfigurationError(
        "invalid configuration: "
        + "; ".join(problems)
        + f"; settings are {ENV_PREFIX}<SECTION>__<KEY>, and the others known are "
        + ", ".join(sorted(OTHER_VARIABLES))
    )


def _anchor(settings: Settings, base: Path) -> Settings:
    """Resolve relative paths against the config file's folder."""
    store = settings.event_store
    data_dir = store.embedded_data_dir
    if not data_dir.is_absolute():
        store = store.model_copy(update={"embedded_data_dir": base / data_dir})
    mdb = settings.message_db
    if mdb.package_path is not None and not mdb.package_path.is_absolute():
        mdb = mdb.model_copy(update={"package_path": base / mdb.package_path})
    return settings.model_copy(update={"event_store": store, "message_db": mdb})


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Load ``path`` (default: ``$WORKER_CONFIG`` or ``./domain.toml``) and the environment.

    Any problem becomes one ``ConfigurationError`` naming the file and the offending keys.
    """
    check_environment(os.environ)
    config = _config_path(path)
    where = f"{config} and WORKER_* variables" if config else "WORKER_* variables"
    token = _config_file.set(config)
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        raise ConfigurationError(_describe(error, where)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"config file {config} is not valid TOML: {error}") from None
    finally:
        _config_file.reset(token)
    base = config.resolve().parent if config else Path.cwd()
    settings = settings.model_copy(update={"config_file": config})
    return _anchor(settings, base)


@dataclass(frozen=True)
class Effective:
    """One key of the settings in force, as ``worker config`` shows it."""

    key: str  # "[section] name"
    value: Any  # secrets masked
    source: str  # "file PATH", "environment WORKER_...", or "default"


def _masked(section: str, name: str, value: Any) -> Any:
    if isinstance(value, SecretStr):
        if (section, name) == ("event_store", "database_uri"):
            return redact(value.get_secret_value())  # the address, password hidden
        return "**********"
    if isinstance(value, Path):
        return str(value)
    return value


def _from_environment(section: str, name: str, environ: Mapping[str, str]) -> str | None:
    """The variable that sets the key, if any (names are not case-sensitive): the key's own
    ``WORKER_SECTION__NAME``, or a JSON object in ``WORKER_SECTION`` holding it."""
    upper = {key.upper(): key for key in environ}
    own = f"WORKER_{section}__{name}".upper()
    if own in upper:
        return upper[own]
    whole = upper.get(f"WORKER_{section}".upper())
    if whole is not None:
        with contextlib.suppress(ValueError):
            if name in json.loads(environ[whole]):
                return whole
    return None


def effective(settings: Settings, environ: Mapping[str, str] = os.environ) -> list[Effective]:
    """Every key in force with where it came from: the environment (which wins), the config
    file, or the default. Secrets are masked; the database URI shows without its password."""
    in_file: dict[str, Any] = {}
    if settings.config_file is not None:
        with settings.config_file.open("rb") as handle:
            in_file = tomllib.load(handle)
    found = []
    for section, cls in _sections().items():
        current = getattr(settings, section)
        for name in cls.model_fields:
            variable = _from_environment(section, name, environ)
            if variable is not None:
                source = f"environment {variable}"
            elif name in in_file.get(section, {}):
                source = f"file {settings.config_file}"
            else:
                source = "default"
            value = _masked(section, name, getattr(current, name))
            found.append(Effective(f"[{section}] {name}", value, source))
    return found
