"""The events table's retention (Config.events_ttl_s): a typed setting with an environment
variable, the table's default_time_to_live, 0 = keep events forever."""

from __future__ import annotations

import pytest

from streamrec.config import CassandraConfig, Config
from streamrec.connectors.cassandra import schema_statements


def _events_table(statements: list[str]) -> str:
    return next(s for s in statements if ".events (" in s)


def test_events_are_kept_thirty_days_by_default():
    assert Config().cassandra.events_ttl_s == 30 * 86_400
    assert "default_time_to_live = 2592000" in _events_table(schema_statements("ks", 1,
                                                                               Config().cassandra.events_ttl_s))


def test_the_retention_comes_from_the_environment_and_zero_keeps_events_forever():
    assert Config.from_env({"STREAMREC_EVENTS_TTL_S": "3600"}).cassandra.events_ttl_s == 3600
    assert "default_time_to_live = 0" in _events_table(schema_statements("ks", 1, 0))


@pytest.mark.parametrize("ttl", [-1, 630_720_001])
def test_a_retention_cassandra_cannot_hold_is_refused(ttl):
    with pytest.raises(ValueError, match="EVENTS_TTL_S"):
        Config(cassandra=CassandraConfig(events_ttl_s=ttl))


def test_only_the_events_table_expires():
    others = [s for s in schema_statements("ks", 1, 3600) if ".events (" not in s]
    assert others and not any("time_to_live" in s for s in others)
