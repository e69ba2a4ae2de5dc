"""``redact``: every secret a database URI can carry is hidden, the rest shown as written."""

from __future__ import annotations

import pytest

from worker.store.database import redact, unavailable


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("postgresql://u:s3cret@h:5432/d", "postgresql://u:***@h:5432/d"),
        ("postgresql://u@h/d?password=s3cret", "postgresql://u@h/d?password=***"),
        (
            "postgresql://u@h/d?sslmode=require&sslpassword=s3cret&passfile=/etc/s3cret",
            "postgresql://u@h/d?sslmode=require&sslpassword=***&passfile=***",
        ),
        (
            "postgresql://u@h/d?api_token=s3cret&client_secret=s3cret&sslkey=/k/s3cret",
            "postgresql://u@h/d?api_token=***&client_secret=***&sslkey=***",
        ),
        ("postgresql://u@h/d?PASSWORD=s3cret", "postgresql://u@h/d?PASSWORD=***"),
        ("postgresql://u@h/d?pass%77ord=s3cret", "postgresql://u@h/d?pass%77ord=***"),
    ],
)
def test_every_secret_parameter_is_masked(uri: str, shown: str) -> None:
    """The userinfo password, ``password``, ``passfile``, ``sslpassword`` and any parameter
    whose name says secret (pass, secret, token, key) show as ``***``."""
    assert redact(uri) == shown


def test_other_parameters_are_shown_as_written() -> None:
    """Nothing but secrets changes: the host list, the port, other parameters."""
    uri = "postgresql://u@a:5432,b:5433/d?sslmode=verify-full&application_name=x%20y&port=5432"
    assert redact(uri) == uri


def test_error_text_carrying_a_query_password_is_masked() -> None:
    """An error line built from a URI and an error that repeats the secret hides it twice."""
    uri = "postgresql://u@h:1/d?password=s3cret"
    line = str(unavailable(uri, OSError("refused for password s3cret")))
    assert "s3cret" not in line
    assert "postgresql://u@h:1/d?password=***" in line
