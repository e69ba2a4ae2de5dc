"""deploy/Containerfile: multi-stage from one BASE_IMAGE; MessageDB fetched with npm in a build
stage and baked in; a runtime stage with no npm or compiler, a non-root user and `worker` as its
entry point. (`make image-test` builds it and runs it; this only reads it.)"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib

from tests.deploy._files import CONTAINERFILE, DEPLOY, containerfile

ROOT = DEPLOY.parent


def test_one_base_image_argument_with_an_official_python_default() -> None:
    preamble, stages = containerfile()
    args = dict(arg.partition("=")[::2] for kind, arg in preamble if kind == "ARG")
    assert re.fullmatch(r"docker\.io/library/python:3\.1[1-9]-slim(-\w+)?", args["BASE_IMAGE"])
    assert len(stages) >= 3
    assert {stage.base for stage in stages} == {"${BASE_IMAGE}"}


def test_message_db_is_fetched_with_npm_checked_and_baked_in() -> None:
    _, stages = containerfile()
    fetch = next(stage for stage in stages if stage.name == "message-db")
    args = dict(arg.partition("=")[::2] for arg in fetch.all("ARG"))
    run = " ".join(fetch.all("RUN"))
    assert "npm pack" in run and "sha512sum -c" in run
    assert re.fullmatch(r"[0-9a-f]{128}", args["MESSAGE_DB_SHA512"])
    config = tomllib.loads((ROOT / "domain.toml").read_text())
    assert args["MESSAGE_DB_VERSION"] == config["message_db"]["version"]
    final = stages[-1]
    assert any(c.startswith("--from=message-db /opt/message-db ") for c in final.all("COPY"))
    env = " ".join(final.all("ENV"))
    assert "WORKER_MESSAGE_DB__PACKAGE_PATH=/opt/message-db" in env


def test_the_runtime_stage_runs_worker_as_a_non_root_user_without_npm_or_compiler() -> None:
    _, stages = containerfile()
    final = stages[-1]
    assert final.name is None or final.name not in ("message-db", "build")
    (user,) = final.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0
    assert json.loads(final.all("ENTRYPOINT")[0]) == ["worker"]
    installs = " ".join(final.all("RUN"))
    for tool in ("npm", "apt-get", "gcc", "build-essential", "pip install"):
        assert tool not in installs, tool


def test_the_scripts_parse() -> None:
    for script in ("image.sh", "image-test.sh", "image-common.sh"):
        subprocess.run(["bash", "-n", str(DEPLOY / script)], check=True)
    assert CONTAINERFILE.with_name("Containerfile.dockerignore").is_file()
