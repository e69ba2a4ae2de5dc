"""Configuration comes from domain.toml, overlaid by WORKER_* variables, and fails clearly."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from worker import ConfigurationError, load_settings
from worker.store.database import is_embedded, redact

if TYPE_CHECKING:
    from pathlib import Path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "domain.toml"
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in ("WORKER_EVENT_STORE__DATABASE_URI", "WORKER_CONFIG", "WORKER_WORKER__BATCH_SIZE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)


def test_toml_values_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[event_store]\ndatabase_uri = "postgresql://u:pw@db:5432/ms"\n[worker]\nbatch_size = 50\n',
    )
    settings = load_settings(path)
    assert settings.event_store.dsn() == "postgresql://u:pw@db:5432/ms"
    assert settings.worker.batch_size == 50
    assert "pw" not in repr(settings)


def test_environment_overrides_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[event_store]\ndatabase_uri = "postgresql://a@x/y"\n')
    monkeypatch.setenv("WORKER_EVENT_STORE__DATABASE_URI", "postgresql://b@z/w")
    monkeypatch.setenv("WORKER_WORKER__BATCH_SIZE", "7")
    settings = load_settings(path)
    assert settings.event_store.dsn() == "postgresql://b@z/w"
    assert settings.worker.batch_size == 7


def test_no_config_means_embedded(tmp_path: Path) -> None:
    settings = load_settings()
    assert is_embedded(settings.event_store.dsn())
    assert settings.event_store.embedded_data_dir == tmp_path / ".worker/postgres"


def test_config_env_variable_picks_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other.toml"
    other.write_text("[worker]\nbatch_size = 3\n")
    monkeypatch.setenv("WORKER_CONFIG", str(other))
    assert load_settings().worker.batch_size == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[worker]\nbatch_size = 0\n", "worker.batch_size: Input should be greater than or equal"),
        ("[worker]\nbatchsize = 5\n", "worker.batchsize: Extra inputs are not permitted"),
        ("[worker]\ngc_threshold = -1\n", "worker.gc_threshold: Input should be greater than or"),
        ('[event_store]\ndatabase_uri = "mysql://x"\n', "event_store.database_uri"),
        ('[event_store]\nprovider = "kafka"\n', "event_store.provider"),
        ("[worker\n", "not valid TOML"),
    ],
)
def test_bad_configuration_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError, match=r"domain\.toml") as caught:
        load_settings(path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"nowhere\.toml does not exist"):
        load_settings(tmp_path / "nowhere.toml")


def test_redact_hides_passwords() -> None:
    assert redact("postgresql://u:s3cret@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert redact("postgresql://u@h/d") == "postgresql://u@h/d"


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        # The seed's layout: a [domain] key at the top level of the file.
        (
            "snapshot_threshold = 10\n",
            "snapshot_threshold: Extra inputs are not permitted "
            "(did you mean `[domain] snapshot_threshold`?)",
        ),
        (
            "batch_size = 10\n[worker]\nlog_level = 'info'\n",
            "(did you mean `[worker] batch_size`?)",
        ),
        (
            "[worker]\nbatchsize = 5\n",
            "worker.batchsize: Extra inputs are not permitted (did you mean `batch_size`?)",
        ),
        ("[worker]\nnotify_trigger = false\n", "(did you mean `[event_store] notify_trigger`?)"),
        ("[workers]\nbatch_size = 5\n", "(did you mean `[worker]`?)"),
    ],
)
def test_unknown_key_suggests_the_one_meant(tmp_path: Path, text: str, hint: str) -> None:
    """An unknown key names the known key it most likely is: the same key in its section, or
    a close spelling."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings(write(tmp_path, text))
    assert hint in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unknown_key_like_nothing_gets_no_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(write(tmp_path, "[worker]\nzebra = 1\n"))
    assert "did you mean" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[worker]\npoll_interval_min = 2.0\npoll_interval_max = 1.0\n",
            "poll_interval_min (2.0) is greater than poll_interval_max (1.0)",
        ),
        (
            "[worker]\nretry_base_delay = 60\n",
            "retry_base_delay (60.0) is greater than retry_max_delay (30.0)",
        ),
        ('[worker]\nread_model_schema = "message_store"\n', "not a place for read models"),
        ('[worker]\nread_model_schema = "Reports; drop"\n', "not a plain schema name"),
        (
            "[event_store]\nconnect_timeout = 0\n",
            "event_store.connect_timeout: Input should be greater than 0",
        ),
        (
            '[event_store]\ndatabase_uri = "postgresql://u:s3cret@db:54x2/ms"\n',
            "port '54x2' is not a number",
        ),
        (
            '[event_store]\ndatabase_uri = "postgresql://u@a:5432,b:xx/ms"\n',
            "port 'xx' is not a number",
        ),
    ],
)
def test_inconsistent_or_malformed_values_are_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(write(tmp_path, text))
    assert message in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_connection_settings_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[event_store]\nconnect_timeout = 2.5\n[worker]\nread_model_schema = "reporting"\n',
    )
    settings = load_settings(path)
    assert settings.event_store.connect_timeout == 2.5
    assert settings.worker.read_model_schema == "reporting"
    assert load_settings(write(tmp_path, "")).worker.read_model_schema == "public"
