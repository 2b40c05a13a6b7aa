"""The notifier's groups: consequences ride along with their root, and a root's group ends with
its episode (before: kept forever, one per root that ever fired)."""

import asyncio
from dataclasses import replace

from pipeline.model.schemas import Alert
from pipeline.notify.delivery import Notifier


def alert(kind: str, entity: str, status: str = "firing", root_cause: str | None = None) -> Alert:
    return Alert(
        kind=kind,
        entity=entity,
        status=status,
        starts_at="2026-01-01T00:00:15.000Z",
        severity="critical",
        summary=f"{kind} {entity}",
        root_cause=root_cause,
    )


async def nowhere(*args: object) -> None:
    return None


def test_a_roots_group_is_dropped_once_its_resolution_is_handled() -> None:
    async def run() -> Notifier:
        notifier = Notifier([], nowhere)
        leaf = alert("switch_down", "leaf003")
        await notifier.submit(leaf)
        for n in range(3):
            await notifier.submit(alert("link_down", f"leaf003:{n}", root_cause=leaf.id))
        assert notifier.with_group(leaf).evidence["grouped"]["count"] == 3
        await notifier.submit(replace(leaf, status="resolved", ends_at="2026-01-01T00:05:00.000Z"))
        return notifier

    notifier = asyncio.run(run())
    assert notifier.groups == {}
