"""The PrometheusRule and PodMonitor of deploy/kubernetes: the Prometheus operator's kinds,
which kubernetes-validate does not know. Structure: the fields the operator requires and no
others than those it defines for what is used. Rules: `promtool check rules` (PromQL parsed,
unknown fields refused) and `promtool test rules`, each alert on made-up series, firing when
it should and quiet when it should not. And every metric the rules read is one a running worker
exports."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.deploy._files import resource, unavailable
from tests.deploy.test_dashboard import metric_names, scraped

if TYPE_CHECKING:
    from pathlib import Path

    from worker import MessageStore

API_VERSION = "monitoring.coreos.com/v1"
# The operator's fields (v1) for what the objects use: anything else is a typo or a field of
# another version, which the operator's CRD would refuse.
POD_MONITOR_SPEC = {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel"}
POD_METRICS_ENDPOINT = {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels"}
RULE_SPEC = {"groups"}
RULE_GROUP = {"name", "rules", "interval", "limit"}
ALERTING_RULE = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
METADATA = {"name", "namespace", "labels", "annotations"}


def rule() -> dict[str, Any]:
    return resource("PrometheusRule")


def alerting_rules() -> list[dict[str, Any]]:
    return [r for group in rule()["spec"]["groups"] for r in group["rules"]]


def test_the_pod_monitor_has_what_the_operator_requires_and_nothing_else() -> None:
    monitor = resource("PodMonitor")
    assert monitor["apiVersion"] == API_VERSION
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(monitor["metadata"]) <= METADATA
    spec = monitor["spec"]
    assert set(spec) <= POD_MONITOR_SPEC, set(spec) - POD_MONITOR_SPEC
    assert spec["selector"]["matchLabels"], "a PodMonitor with no selector scrapes every pod"
    assert spec["podMetricsEndpoints"]
    for endpoint in spec["podMetricsEndpoints"]:
        assert set(endpoint) <= POD_METRICS_ENDPOINT, set(endpoint) - POD_METRICS_ENDPOINT
        assert isinstance(endpoint["port"], str), "a named container port"


def test_the_prometheus_rule_has_what_the_operator_requires_and_nothing_else() -> None:
    found = rule()
    assert found["apiVersion"] == API_VERSION
    assert set(found) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(found["metadata"]) <= METADATA
    assert set(found["spec"]) == RULE_SPEC
    for group in found["spec"]["groups"]:
        assert set(group) <= RULE_GROUP and group["name"] and group["rules"], group
        for one in group["rules"]:
            assert set(one) <= ALERTING_RULE, set(one) - ALERTING_RULE
            assert one["alert"] and one["expr"], one
            assert one["labels"]["severity"] in ("warning", "critical"), one["alert"]
            assert {"summary", "description"} <= one["annotations"].keys(), one["alert"]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        unavailable("promtool is not installed (Debian: apt-get install prometheus)")
    assert found is not None
    return found


def write_rules(folder: Path) -> Path:
    """The PrometheusRule's groups as a Prometheus rule file."""
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule()["spec"]["groups"]}))
    return path


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", str(write_rules(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerting_rules())} rules found" in done.stdout


@dataclass
class Case:
    """Series (PromQL series -> promtool's values notation), and the alerts expected at a
    time: each as its labels beyond `alertname` and `severity`, with its summary."""

    alert: str
    series: dict[str, str]
    at: str
    expected: list[tuple[dict[str, str], str]] = field(default_factory=list)


def state(pod: str, consumer: str, current: str) -> dict[str, str]:
    """worker_consumer_state of one consumer in one pod, constant: 1 for ``current``."""
    return {
        f'worker_consumer_state{{namespace="shop",pod="{pod}",consumer="{consumer}",'
        f'state="{name}"}}': f"{int(name == current)}x20"
        for name in ("starting", "waiting", "running", "caught_up", "disconnected", "stopped")
    }


LAG = 'worker_consumer_lag_seconds{namespace="shop",pod="a",consumer="orders:order"}'
PARKED = 'worker_messages_parked_total{namespace="shop",pod="a",consumer="orders:order"}'
TAKEOVERS = 'worker_lease_takeovers_total{namespace="shop",pod="b",consumer="orders:order"}'
ORDERS = {"namespace": "shop", "consumer": "orders:order"}

CASES = {
    "lagging for five minutes fires": Case(
        "ProjectionWorkerConsumerLagging",
        {LAG: "0+60x20"},  # a minute further behind every minute
        "12m",
        [(ORDERS, "Consumer orders:order is 12m 0s behind")],
    ),
    "lagging not yet for five minutes is quiet": Case(
        "ProjectionWorkerConsumerLagging", {LAG: "0+60x20"}, "10m"
    ),
    "a small lag is quiet": Case("ProjectionWorkerConsumerLagging", {LAG: "30x20"}, "15m"),
    "a message parked fires": Case(
        "ProjectionWorkerMessagesParked",
        {PARKED: "0 0 0 1 1 1"},
        "5m",
        [(ORDERS, "Consumer orders:order parked messages")],
    ),
    "nothing parked for fifteen minutes is quiet": Case(
        "ProjectionWorkerMessagesParked", {PARKED: "0 0 0 1x30"}, "25m"
    ),
    "a member of a group that no pod holds fires": Case(
        # A group of 3 on two pods, one member each: member 2 waits in both.
        "ProjectionWorkerConsumerWithoutHolder",
        {
            **state("a", "orders:order@0/3", "running"),
            **state("b", "orders:order@0/3", "waiting"),
            **state("a", "orders:order@1/3", "waiting"),
            **state("b", "orders:order@1/3", "caught_up"),
            **state("a", "orders:order@2/3", "waiting"),
            **state("b", "orders:order@2/3", "starting"),
        },
        "10m",
        [
            (
                {"namespace": "shop", "consumer": "orders:order@2/3"},
                "No worker pod holds consumer orders:order@2/3",
            )
        ],
    ),
    "a consumer held by one pod is quiet": Case(
        "ProjectionWorkerConsumerWithoutHolder",
        {**state("a", "orders:order", "caught_up"), **state("b", "orders:order", "waiting")},
        "10m",
    ),
    "the database out of reach for two minutes fires": Case(
        "ProjectionWorkerDatabaseDown",
        {'worker_database_up{namespace="shop",pod="a"}': "1 1 0x10"},
        "5m",
        [({"namespace": "shop", "pod": "a"}, "Worker pod a cannot reach its database")],
    ),
    "the database back within a minute is quiet": Case(
        "ProjectionWorkerDatabaseDown",
        {'worker_database_up{namespace="shop",pod="a"}': "1 0 1x10"},
        "5m",
    ),
    "a takeover fires": Case(
        "ProjectionWorkerLeaseTakeovers",
        {TAKEOVERS: "0 0 1x5"},
        "4m",
        [(ORDERS, "Consumer orders:order was taken over from its holder")],
    ),
    "no takeover is quiet": Case("ProjectionWorkerLeaseTakeovers", {TAKEOVERS: "0x20"}, "10m"),
    "a halted consumer fires": Case(
        "ProjectionWorkerConsumerHalted",
        {**state("a", "orders:order", "stopped"), **state("b", "orders:order", "waiting")},
        "3m",
        [({**ORDERS, "state": "stopped"}, "Consumer orders:order is stopped")],
    ),
    "a running consumer is not halted": Case(
        "ProjectionWorkerConsumerHalted",
        {**state("a", "orders:order", "running"), **state("b", "orders:order", "waiting")},
        "3m",
    ),
}


def expected_alerts(case: Case) -> list[dict[str, Any]]:
    (found,) = [r for r in alerting_rules() if r["alert"] == case.alert]
    return [
        {
            "exp_labels": {**labels, "severity": found["labels"]["severity"]},
            "exp_annotations": {
                "summary": summary,
                "description": found["annotations"]["description"],
            },
        }
        for labels, summary in case.expected
    ]


@pytest.mark.parametrize("name", CASES)
def test_the_alert_on_made_up_series(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    write_rules(tmp_path)
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
                "alert_rule_test": [
                    {
                        "eval_time": case.at,
                        "alertname": case.alert,
                        "exp_alerts": expected_alerts(case),
                    }
                ],
            }
        ],
    }
    path = tmp_path / "tests.yaml"
    path.write_text(yaml.safe_dump(tests))
    done = subprocess.run(
        [promtool(), "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_case_that_fires_and_one_that_is_quiet() -> None:
    for one in alerting_rules():
        cases = [c for c in CASES.values() if c.alert == one["alert"]]
        assert any(c.expected for c in cases), f"{one['alert']}: no case where it fires"
        assert any(not c.expected for c in cases), f"{one['alert']}: no case where it is quiet"


@pytest.mark.anyio
async def test_every_metric_the_alerts_read_is_exported(
    store: MessageStore, database_dsn: str
) -> None:
    used = {name for one in alerting_rules() for name in metric_names(one["expr"])}
    exported = await scraped(store, database_dsn)
    assert used, "the rules read no metric"
    assert used <= exported, f"not exported: {sorted(used - exported)}"
