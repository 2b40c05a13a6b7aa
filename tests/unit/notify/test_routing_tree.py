"""The routing tree, as Alertmanager walks its `route:`: first matching child, `continue`, nested
routes, the default, inherited receiver and group_wait; and its validation, naming the bad key."""

import asyncio

import pytest

from pipeline.model.schemas import Alert
from pipeline.notify.delivery import Notifier
from pipeline.notify.routing import RouteTarget, routed
from pipeline.settings import RouteSettings, SettingsError, load_settings

RECEIVERS = [{"name": n, "url": f"http://127.0.0.1:9/{n}"} for n in ("default", "net", "net-lead", "train", "audit")]
TREE = {
    "receiver": "default",
    "group_wait": "5s",
    "routes": [
        {
            "matchers": ["kind=~.*_down|link_.*", "switch=~leaf.*|spine.*"],
            "receiver": "net",
            "group_wait": "30s",
            "routes": [{"matchers": ["severity=critical", "switch=~spine.*"], "receiver": "net-lead"}],
        },
        {"matchers": ["job=~pretrain.*"], "receiver": "train", "continue": True},
        {"matchers": ["severity=critical"], "receiver": "audit"},
    ],
}


def settings(tree: dict = TREE, receivers: list = RECEIVERS):  # noqa: ANN201
    return load_settings({"notify": {"receivers": receivers, "route": tree}}, environ={})


def alert(kind: str, entity: str, severity: str = "critical", **labels: str) -> Alert:
    return Alert(
        kind=kind,
        entity=entity,
        status="firing",
        starts_at="2026-12-02T06:00:00.000Z",
        severity=severity,
        summary="s",
        labels=labels,
    )


def waits(targets: list[RouteTarget]) -> list[tuple[str, float | None]]:
    return [(t.receiver, t.group_wait_s) for t in targets]


def where(route: RouteSettings, a: Alert) -> list[tuple[str, float | None]]:
    return waits(routed(route, a))


def test_an_alert_goes_down_the_first_matching_route_and_on_where_continue_says() -> None:
    route = settings().notify.route
    assert route is not None
    assert where(route, alert("switch_down", "leaf007", switch="leaf007")) == [("net", 30.0)]
    assert where(route, alert("switch_down", "spine03", switch="spine03")) == [("net-lead", 30.0)]  # nested, inherits
    assert where(route, alert("straggler", "node0001-card3", "warning", job="pretrain-a")) == [("train", 5.0)]
    assert where(route, alert("card_failed", "node0001-card3", job="pretrain-a")) == [("train", 5.0), ("audit", 5.0)]
    assert where(route, alert("thermal_throttle", "node0002-card1", "warning")) == [("default", 5.0)]  # no child


def test_the_notifier_sends_to_the_routes_receivers_only() -> None:
    s = settings()

    async def targets(a: Alert) -> list[tuple[str, float | None]]:
        async def nowhere(*args: object) -> None:
            return None

        return waits(Notifier(s.notify.receivers, nowhere, route=s.notify.route)._route(a))

    assert asyncio.run(targets(alert("card_failed", "node0001-card3", job="pretrain-a"))) == [
        ("train", 5.0),
        ("audit", 5.0),
    ]


@pytest.mark.parametrize(
    ("tree", "receivers", "says"),
    [
        ({"routes": []}, RECEIVERS, "notify.route.receiver: the top route needs one"),
        (
            {"receiver": "default", "routes": [{"routes": [{"receiver": "pager"}]}]},
            RECEIVERS,
            "notify.route.routes.0.routes.0.receiver: no receiver named 'pager'",
        ),
        (
            {"receiver": "default", "routes": [{"matchers": ["switch~leaf"]}]},
            RECEIVERS,
            "setting 'notify.route.routes.0.matchers'",
        ),
        (
            {"receiver": "default", "mute_time_intervals": ["weekends"]},
            RECEIVERS,
            "mute_time_intervals is not supported",
        ),
        ({"receiver": "default", "group_by": ["...", "switch"]}, RECEIVERS, "'...' groups by every label"),
        ({"receiver": "default", "group_by": ["switch", "switch"]}, RECEIVERS, "a label is named twice"),
        ({"receiver": "default", "group_by": ["rack-id"]}, RECEIVERS, "'rack-id' is not a label name"),
        (
            {"receiver": "default", "routes": [{"receiver": "net", "group_interval": "0s"}]},
            RECEIVERS,
            "setting 'notify.route.routes.0.group_interval'",
        ),
        (
            {"receiver": "default", "routes": [{"receiver": "net", "group_wait": "soon"}]},
            RECEIVERS,
            "'soon' is not a duration",
        ),
        (
            {"receiver": "default"},
            [{"name": "default", "url": "http://a/", "kinds": ["card_failed"]}],
            "notify.receivers.0.kinds: with a route",
        ),
    ],
)
def test_a_bad_tree_is_one_line_naming_its_key(tree: dict, receivers: list, says: str) -> None:
    with pytest.raises(SettingsError) as refused:
        settings(tree, receivers)
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_without_a_tree_the_flat_receivers_filter_for_themselves() -> None:
    s = load_settings(
        {
            "notify": {
                "receivers": [
                    {"name": "net", "url": "http://a/", "kinds": ["switch_down"]},
                    {"name": "all", "url": "http://b/"},
                ]
            }
        },
        environ={},
    )

    async def targets(a: Alert) -> list[str]:
        async def nowhere(*args: object) -> None:
            return None

        return [t.receiver for t in Notifier(s.notify.receivers, nowhere)._route(a)]

    assert asyncio.run(targets(alert("switch_down", "leaf007"))) == ["net", "all"]
    assert asyncio.run(targets(alert("card_failed", "node0001-card1"))) == ["all"]


def test_the_operations_pages_example_loads_and_routes_as_it_says() -> None:
    import yaml

    from tests.conftest import ROOT

    page = (ROOT / "docs" / "operations.md").read_text()
    block = page.split("## On-call routing: a tree", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    route = load_settings(yaml.safe_load(block), environ={}).notify.route
    assert route is not None
    assert waits(routed(route, alert("switch_down", "spine07", switch="spine07"))) == [("fabric-lead", 30.0)]
    assert waits(routed(route, alert("card_failed", "node0001-card3", job="pretrain-a"))) == [
        ("training", 5.0),
        ("archive", 5.0),
    ]
    assert waits(routed(route, alert("node_down", "node0001", node="node0001"))) == [("archive", 5.0)]
    assert waits(routed(route, alert("thermal_throttle", "node0002-card1", "warning"))) == [("gpu-oncall", 5.0)]


def test_grouping_settings_are_inherited_and_a_child_overrides_them() -> None:
    tree = {
        "receiver": "default",
        "group_by": ["kind"],
        "group_interval": "1m",
        "repeat_interval": "4h",
        "routes": [
            {"matchers": ["switch=~leaf.*"], "receiver": "net", "group_by": ["switch"], "group_interval": "10s"},
            {"matchers": ["job=~pretrain.*"], "receiver": "train", "group_by": ["..."]},
        ],
    }
    route = settings(tree).notify.route
    [net] = routed(route, alert("switch_down", "leaf007", switch="leaf007"))
    assert (net.group_by, net.group_interval_s, net.repeat_interval_s) == (("switch",), 10.0, 4 * 3600.0)
    assert net.route_key == "{}/{switch=~leaf.*}" and net.aggregates
    [train] = routed(route, alert("straggler", "node0001-card1", "warning", job="pretrain-a"))
    assert train.group_by == ("...",) and not train.aggregates  # each alert its own notification
    [top] = routed(route, alert("node_down", "node0001"))
    assert (top.receiver, top.group_by, top.group_interval_s, top.route_key) == ("default", ("kind",), 60.0, "{}")
