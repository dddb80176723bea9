"""Tier markers: tests under tests/unit are `unit` etc., so `pytest -m unit` runs the fast tier alone."""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        for tier in ("unit", "minicluster", "e2e"):
            if f"/tests/{tier}/" in str(item.fspath):
                item.add_marker(getattr(pytest.mark, tier))
