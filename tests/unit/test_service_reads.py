"""The service's Cassandra reads: reads that arrive while one is in flight gather and go as one
request when it answers; the driver builds each collection column type once (it parses every
answer's column types again): the same type comes back, and it reads values as before."""

from __future__ import annotations

import asyncio
from collections import namedtuple
from typing import Any, Sequence

from cassandra.cqltypes import FloatType, ListType, MapType, VarcharType

from streamrec.service.backend import ReadBatcher, ReadTimeout, reuse_collection_types

Row = namedtuple("Row", "user_id n")


async def turns(n: int = 3) -> None:
    """Let the event loop turn a few times (a read's flush runs at the end of its turn)."""
    for _ in range(n):
        await asyncio.sleep(0)


class HeldAnswer:
    """A driver ResponseFuture the test answers by hand (on the loop's own thread: the batcher
    hops to the loop with call_soon_threadsafe either way)."""

    def __init__(self, user_ids: Sequence[str]) -> None:
        self.user_ids = list(user_ids)
        self.callback: Any = None

    def add_callbacks(self, callback: Any, errback: Any, callback_args: tuple = (), errback_args: tuple = ()) -> None:
        self.callback = lambda: callback([Row(u, int(u[1:])) for u in self.user_ids], *callback_args)


class FakeCassandra:
    """Records each request the batcher sends (fake: no driver, no Cassandra)."""

    def __init__(self) -> None:
        self.requests: list[HeldAnswer] = []

    def recommendations_future(self, user_id: str) -> HeldAnswer:
        return self.recommendations_many_future([user_id])

    def recommendations_many_future(self, user_ids: Sequence[str]) -> HeldAnswer:
        self.requests.append(HeldAnswer(user_ids))
        return self.requests[-1]


def test_reads_arriving_while_one_is_in_flight_go_together_when_it_answers() -> None:
    cassandra = FakeCassandra()
    batcher = ReadBatcher(cassandra)

    async def scenario() -> None:
        first = asyncio.ensure_future(batcher.read("u1"))
        await turns()
        assert [r.user_ids for r in cassandra.requests] == [["u1"]]  # a lone read goes at once
        later = []
        for user in ("u2", "u3", "u2"):  # one per turn of the loop, while u1 is in flight
            later.append(asyncio.ensure_future(batcher.read(user)))
            await turns()
        assert len(cassandra.requests) == 1  # they wait for the read in flight
        cassandra.requests[0].callback()
        assert (await first).n == 1
        await asyncio.sleep(0)
        assert [r.user_ids for r in cassandra.requests] == [["u1"], ["u2", "u3"]]  # then go as one
        cassandra.requests[1].callback()
        assert [r.n for r in await asyncio.gather(*later)] == [2, 3, 2]
        alone = asyncio.ensure_future(batcher.read("u4"))  # nothing in flight again: at once
        await turns()
        assert [r.user_ids for r in cassandra.requests][-1] == ["u4"]
        cassandra.requests[-1].callback()
        assert (await alone).n == 4

    asyncio.run(scenario())


def test_a_read_in_flight_past_its_deadline_lets_the_reads_behind_it_go() -> None:
    cassandra = FakeCassandra()
    batcher = ReadBatcher(cassandra, timeout=0.1)

    async def scenario() -> None:
        stuck = asyncio.ensure_future(batcher.read("u1"))  # Cassandra never answers this one
        await turns()
        behind = asyncio.ensure_future(batcher.read("u2"))
        await asyncio.sleep(0.05)
        assert len(cassandra.requests) == 1
        try:
            await stuck
        except ReadTimeout:
            pass
        else:
            raise AssertionError("the stuck read must fail at its deadline")
        await turns()
        assert [r.user_ids for r in cassandra.requests] == [["u1"], ["u2"]]
        cassandra.requests[1].callback()
        assert (await behind).n == 2
        cassandra.requests[0].callback()  # the stuck read's late answer: nobody waits for it

    asyncio.run(scenario())


def test_a_collection_type_is_built_once_and_reads_its_values_as_before() -> None:
    fresh = ListType.apply_parameters((VarcharType,))
    reuse_collection_types()
    reuse_collection_types()  # a second backend in the same process: still one layer
    texts = ListType.apply_parameters((VarcharType,))
    assert ListType.apply_parameters([VarcharType]) is texts
    assert ListType.apply_parameters((FloatType,)) is not texts
    assert MapType.apply_parameters((VarcharType, FloatType)) is MapType.apply_parameters((VarcharType, FloatType))
    assert texts.cql_parameterized_type() == fresh.cql_parameterized_type() == "list<varchar>"
    value = ["p1", "p2", "é"]
    assert texts.deserialize(texts.serialize(value, 4), 4) == fresh.deserialize(fresh.serialize(value, 4), 4) == value
