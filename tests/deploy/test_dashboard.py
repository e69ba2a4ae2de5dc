"""deploy/grafana-dashboard.json is built on exactly the metrics a running worker exports: every
metric its queries name is on a live `/metrics`, and every `worker_*` metric is on a panel."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy._files import DEPLOY
from tests.integration.test_engine import FAST, deposit, ledger_domain
from tests.integration.test_health import get
from worker import Runner
from worker.ops.runner import probes_of

if TYPE_CHECKING:
    from worker import MessageStore

pytestmark = pytest.mark.anyio

DASHBOARD = DEPLOY / "grafana-dashboard.json"

_FUNCTION_OR_KEYWORD = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
_OPERATORS = {"and", "or", "unless", "offset", "atan2"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, labels and keywords left out)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        word = match.group()
        if following.startswith("(") or word in _FUNCTION_OR_KEYWORD | _OPERATORS:
            continue
        names.add(word)
    return names


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panels' targets (in rows too), and the metric
    the template variables read their values from."""
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            found.extend(target["expr"] for target in inner.get("targets", []))
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else None
        if text:
            match = re.fullmatch(r"label_values\((.*),\s*\w+\)", text)
            assert match, f"variable {variable['name']}: {text}"
            found.append(match.group(1))
    return found


def test_expressions_parse_into_metric_names() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (consumer, le) (rate(worker_x_bucket{job=~"$job"}'
        "[$__rate_interval]))) / on (consumer) max by (consumer) (worker_y)"
    )
    assert metric_names(expr) == {"worker_x_bucket", "worker_y"}


def probes(runner: Any) -> Any:
    """The runner's probes server, once started."""
    server = probes_of(runner)
    assert server is not None
    return server


async def scraped(store: MessageStore, database_dsn: str) -> set[str]:
    """The sample names on `/metrics` of a runner that handled messages and parked one."""
    await deposit(store, accounts=2, per_account=3)
    settings = FAST.model_copy(update={"http_port": 0, "http_host": "127.0.0.1"})
    runner = Runner(ledger_domain(lambda e: e.n == 2 and e.account == "a1"), database_dsn, settings)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runner.run(handle_signals=False))
        with anyio.fail_after(10):
            while probes_of(runner) is None or any(
                c.state != "caught_up" for c in runner.result.consumers
            ):
                await anyio.sleep(0.01)
        status, body = await get(probes(runner).port, "/metrics")
        runner.request_stop()
    assert status == 200
    return {
        sample.name for family in text_string_to_metric_families(body) for sample in family.samples
    }


async def test_every_metric_the_dashboard_reads_is_exported_and_every_worker_metric_is_shown(
    store: MessageStore, database_dsn: str
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = {name for expr in queries(dashboard) for name in metric_names(expr)}
    exported = await scraped(store, database_dsn)
    assert used, "the dashboard queries nothing"
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in exported}
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}
    worker = {name for name in families if name.startswith("worker_")}
    assert worker <= shown, f"worker metrics on no panel: {sorted(worker - shown)}"


def test_every_panel_reads_the_chosen_datasource_and_consumers() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            # (worker_database_up is the process's: it has no consumer label)
            if "worker_" in target["expr"] and "worker_database_up" not in target["expr"]:
                assert 'consumer=~"$consumer"' in target["expr"], panel["title"]
