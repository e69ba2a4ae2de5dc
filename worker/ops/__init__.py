"""Operations: settings (``domain.toml`` + environment), loading the application, logging,
probes and metrics, ``worker status``, ``worker.Runner`` (the engine's runner with the services
of a deployed process: probes, systemd notifications) and the command line (``cli``).

May import: every layer and ``worker.domain``. Nothing imports it but ``worker`` and
``worker.admin`` (the public API) and ``worker.__main__``.
"""
