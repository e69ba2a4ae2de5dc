"""Finding the application's ``Domain``: import ``[domain] modules``, then ``instance``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from worker.domain import Domain
from worker.errors import ConfigurationError

if TYPE_CHECKING:
    from types import ModuleType

    from worker.ops.settings import Settings


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ConfigurationError(
            f"cannot import module {name!r} named in [domain] modules: {error}"
        ) from error


def load_domain(settings: Settings) -> Domain:
    """Import the application's modules and return its configured ``Domain``."""
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
