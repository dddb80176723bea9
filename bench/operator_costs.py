"""Where the per-event cost of the keyed update-and-recommend operator goes (a diagnostic, session 8).

Thread mode, a local minicluster, no Kafka or Cassandra: pre-parsed events from a collection ->
key_by(user) -> a variant of Recommend -> a discarding sink. Run each variant at two sizes and
subtract (start-up is 5-10 s):

    for v in bare state_only norank_small norank full; do for n in 10000 50000; do
        .venv/bin/python bench/operator_costs.py $v $n; done; done

Variants: bare (no state, a one-field row out), state_only (+ ValueState read and write),
norank_small (+ unpickle, apply_event, pickle), norank (+ the full output row, 30 ids and scores),
full (the real operator: + the top-k). Also: src, map, keymap (the source, a Python map, key_by + map);
session 9: norank_str (norank with the 30 ids and scores as one string each), state_ttl (state_only with
the job's default user TTL).
"""
import pickle
import sys
import time

from pyflink.common import Row, Types

from streamrec.bench.generator import EventGenerator, synthetic_catalog
from streamrec.config import Config
from streamrec.jobs.job import create_env
from streamrec.model.model import UserState, apply_event, write_timestamp_us
from streamrec.model.variants import Variants
from streamrec.udfs.operators import (
    CONTROL_ROW,
    CONTROL_STATE,
    EVENT_ROW,
    RECOMMENDATION_FIELDS,
    RECOMMENDATION_ROW,
    Recommend,
    row_to_event,
)

CAT = synthetic_catalog(10_000, 64)
def loader(): return CAT

SMALL = Types.ROW_NAMED(["event_id"], [Types.STRING()])
IDS = [f"p{i}" for i in range(30)]
SC = [0.5] * 30

class NoRank(Recommend):
    """The real operator's state update, a fixed list instead of the top-k."""

    def _update(self, value):
        variant, params = self._variants.for_user(value.user_id)
        raw = self._state.value()
        state = pickle.loads(raw) if raw is not None else UserState()
        state = apply_event(state, row_to_event(value), self._current_catalog(), params, self._user_ttl_ms)
        self._state.update(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        return state, variant

    def process_element(self, value, ctx):
        state, variant = self._update(value)
        yield Row(*value, write_timestamp_us(state), IDS, SC, "personal", variant, state.impressions, state.hits)


class NoRankSmall(NoRank):
    def process_element(self, value, ctx):
        self._update(value)
        yield Row(value.event_id)


class Bare(Recommend):
    def process_element(self, value, ctx):
        yield Row(value.event_id)

class StateOnly(Recommend):
    def process_element(self, value, ctx):
        raw = self._state.value()
        self._state.update(raw or b"x" * 400)
        yield Row(value.event_id)

IDS_STR = "\t".join(IDS)
SC_STR = ",".join(str(x) for x in SC)
STRING_ROW = Types.ROW_NAMED(
    RECOMMENDATION_FIELDS, [*RECOMMENDATION_ROW.get_field_types()[:7], Types.STRING(), Types.STRING(),
                            *RECOMMENDATION_ROW.get_field_types()[9:]])


class NoRankStrings(NoRank):
    """The full row, but the 30 ids and scores each as one string."""

    def process_element(self, value, ctx):
        state, variant = self._update(value)
        yield Row(*value, write_timestamp_us(state), IDS_STR, SC_STR, "personal", variant, state.impressions,
                  state.hits)


VARIANTS = {"full": (Recommend, RECOMMENDATION_ROW), "norank": (NoRank, RECOMMENDATION_ROW),
            "norank_small": (NoRankSmall, SMALL), "state_only": (StateOnly, SMALL), "bare": (Bare, SMALL),
            "norank_str": (NoRankStrings, STRING_ROW), "state_ttl": (StateOnly, SMALL)}

def run(variant, n):
    config = Config.from_env(checkpoint_interval_ms=0)
    env = create_env(config)
    gen = EventGenerator(CAT.product_ids, 3000, seed=1)
    rows = []
    it = iter(gen)
    for _ in range(n):
        e = next(it)
        rows.append(Row(e.event_id, e.user_id, e.ts, e.type, e.product_id, e.query))
    src = env.from_collection(rows, type_info=EVENT_ROW)
    control = env.from_collection([Row("trending", "", "[]")], type_info=CONTROL_ROW)
    cls, out = VARIANTS.get(variant, (None, None))
    if variant == "src":
        s = src
    elif variant == "keymap":
        s = src.key_by(lambda e: e.user_id, key_type=Types.STRING()).map(lambda e: Row(e.event_id), output_type=SMALL)
    elif variant == "map":
        s = src.map(lambda e: Row(e.event_id), output_type=SMALL)
    else:
      s = (src.key_by(lambda e: e.user_id, key_type=Types.STRING()).connect(control.broadcast(CONTROL_STATE))
         .process(cls(loader, Variants.from_config(config), config.user_ttl_ms if variant == "state_ttl" else 0,
                     None, 0, 0.95, 1), output_type=out))
    from pyflink.java_gateway import get_gateway
    j = get_gateway().jvm
    s._j_data_stream.sinkTo(j.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink())
    t = time.monotonic()
    env.execute(f"mb-{variant}")
    return time.monotonic() - t

if __name__ == "__main__":
    variant, n = sys.argv[1], int(sys.argv[2])
    print(variant, n, round(run(variant, n), 2), flush=True)
