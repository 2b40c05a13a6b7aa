"""Unit tests start no process: a test here that asks for the broker fixture is refused."""

import pytest

PROCESS_FIXTURES = {"broker", "children"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = PROCESS_FIXTURES & set(getattr(item, "fixturenames", ()))
        if used and "tests/unit/" in str(item.path).replace("\\", "/"):
            raise pytest.UsageError(f"{item.nodeid} is a unit test but uses {', '.join(sorted(used))}: move it")
