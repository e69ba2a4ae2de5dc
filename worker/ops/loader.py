"""Finding the application's ``Domain``: import ``[domain] modules``, then ``instance``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from worker.domain import Domain
from worker.errors import ConfigurationError
from worker.ops.settings import CONFIG_ENV, where_looked

if TYPE_CHECKING:
    from types import ModuleType

    from worker.ops.settings import Settings

_NAME_ONE = f"name one with `--config PATH` or {CONFIG_ENV}=PATH"


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ConfigurationError(
            f"cannot import module {name!r} named in [domain] modules: {error}"
        ) from error


def _check_named(settings: Settings) -> None:
    """Refuse settings that name no application: no config file found, or one without it."""
    if settings.domain.modules or settings.domain.instance:
        return
    if settings.config_file is None:
        raise ConfigurationError(
            f"no configuration file found: looked for {where_looked()}; {_NAME_ONE}, "
            "whose [domain] modules name the application"
        )
    raise ConfigurationError(
        f"{settings.config_file} names no application: set [domain] modules (and instance = "
        "'module:name' when they hold several worker.Domain objects)"
    )


def load_domain(settings: Settings) -> Domain:
    """Import the application's modules and return its configured ``Domain``."""
    _check_named(settings)
    base = settings.config_file.resolve().parent if settings.config_file else Path.cwd()
    if str(base) not in sys.path:
        sys.path.insert(0, str(base))
    modules = [_import(name) for name in settings.domain.modules]
    instance = getattr(settings.domain, "instance", None)
    if instance:
        module_name, _, attribute = instance.partition(":")
        domain = getattr(_import(module_name), attribute or "domain", None)
        if not isinstance(domain, Domain):
            raise ConfigurationError(f"[domain] instance {instance!r} is not a worker.Domain")
    else:
        found = [v for m in modules for v in vars(m).values() if isinstance(v, Domain)]
        if not found:
            raise ConfigurationError(
                "no worker.Domain found in [domain] modules; set [domain] instance = 'module:name'"
            )
        domain = found[0]
    domain.configure(settings)
    domain.check()
    return domain
