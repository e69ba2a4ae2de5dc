"""The operators' web console (``worker console``): a small ASGI app showing what
``worker status``, ``worker projections`` and ``worker dlq list`` show, updated live, with the
CLI's actions behind a token.

It needs the ``console`` extra (Starlette, Uvicorn, Jinja2); nothing else imports this package.
"""
