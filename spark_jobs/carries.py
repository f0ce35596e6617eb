"""Each symbol's carried kernel state: what a live bar's metrics continue from (docs/decisions.md, issue 16).

Two places hold a symbol's carry:
- `metrics_carry` (PostgreSQL): (last_ts, generation, state), written inside the merge transaction of the metrics
  it continues, under the symbol's advisory lock;
- the driver's `CACHE`: the carry this process computed last, with the generation of the row it was built on.

A live batch reads each symbol's row without its state (symbol, last_ts, generation) and continues from the cached
carry when the generations agree, else from the row's state. It writes the state back only when the row is
`CHECKPOINT_MINUTES` behind, so at 5,000 symbols a minute neither reads nor writes 32 MB of state. A row that is
behind is still a valid carry: a restarted driver continues from it and recomputes the few bars after it, which
gives the same values (metrics are a pure function of the bars).

Correctness rests on one rule: a change that is not a pure append (a late, repaired or corrected bar at or before
the symbol's last stored bar) writes the row with a fresh generation, so no driver continues from a cached carry
that was built on the bars before the change. A recompute on the cluster deletes the rows of its symbols.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import psycopg

import sparktrends
from spark_jobs.detector_profiles import DetectorProfiles

# How far (in bar time) a symbol's stored carry may fall behind the one in memory before it is written.
CHECKPOINT_MINUTES = 10
EPOCH = dt.datetime.fromtimestamp(0, dt.timezone.utc)


def last_ts(carry: sparktrends.CarryState) -> dt.datetime:
    """The time of the last bar behind `carry`."""
    return EPOCH + dt.timedelta(microseconds=carry.last_ts_us or 0)


def _settings_key(profiles: DetectorProfiles, symbol: str) -> str:
    return json.dumps(profiles.settings_for(symbol), sort_keys=True)


def database_key(conn: psycopg.Connection) -> str:
    info = conn.info
    return f"{info.host}:{info.port}/{info.dbname}"


@dataclass(frozen=True)
class _Cached:
    generation: int
    settings: str  # the profile settings it was computed under
    carry: sparktrends.CarryState


class CarryCache:
    """The carries this process computed last, by (database, symbol), least recently used first out beyond
    `max_entries` (about 6.4 kB each with the default windows: 200,000 are about 1.3 GB). An evicted symbol reads its
    stored carry again, as after a restart. Entries are replaced after each committed merge and dropped when one
    fails. Thread-safe: the bars job's two queries (bars and gap repairs) write from two threads of one driver."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], _Cached] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, database: str, symbol: str) -> _Cached | None:
        with self._lock:
            entry = self._entries.get((database, symbol))
            if entry is not None:
                self._entries.move_to_end((database, symbol))
            return entry

    def put(self, database: str, symbol: str, entry: _Cached) -> None:
        with self._lock:
            self._entries[(database, symbol)] = entry
            self._entries.move_to_end((database, symbol))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def drop(self, database: str, symbols: list[str]) -> None:
        with self._lock:
            for symbol in symbols:
                self._entries.pop((database, symbol), None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


CACHE = CarryCache()


@dataclass(frozen=True)
class StoredRow:
    last_ts: dt.datetime
    generation: int


@dataclass
class Plan:
    """Where each scoped symbol continues from."""

    carries: dict[str, sparktrends.CarryState] = field(default_factory=dict)
    stored: dict[str, StoredRow] = field(default_factory=dict)
    from_cache: int = 0
    rows_read: int = 0  # metrics_carry rows read: one per stored symbol, plus the states fetched


def plan(
    conn: psycopg.Connection,
    scope: Mapping[str, dt.datetime],
    profiles: DetectorProfiles,
    cache: CarryCache | None = None,
) -> Plan:
    """The carry each symbol of `scope` (symbol -> earliest changed bar) continues from: the cached one while its
    row's generation agrees, else the stored one, either only if every changed bar comes after it. The rest warm
    up from their bars."""
    cache = cache if cache is not None else CACHE
    database = database_key(conn)
    result = Plan()
    rows = conn.execute(
        "SELECT symbol, last_ts, generation FROM metrics_carry WHERE symbol = ANY(%s)", (list(scope),)
    ).fetchall()
    result.stored = {symbol: StoredRow(ts, generation) for symbol, ts, generation in rows}
    result.rows_read = len(rows)
    fetch = []
    for symbol, row in result.stored.items():
        cached = cache.get(database, symbol)
        if (
            cached is not None
            and cached.generation == row.generation
            and cached.settings == _settings_key(profiles, symbol)
            and scope[symbol] > last_ts(cached.carry)
        ):
            result.carries[symbol] = cached.carry
            result.from_cache += 1
        elif scope[symbol] > row.last_ts:
            fetch.append(symbol)
    if fetch:
        # Binary results: a state is a few kB, and text would send it hex-encoded, twice the bytes and a decode.
        states = (
            conn.cursor(binary=True)
            .execute("SELECT symbol, state FROM metrics_carry WHERE symbol = ANY(%s)", (fetch,))
            .fetchall()
        )
        result.rows_read += len(states)
        for symbol, state in states:
            try:
                config = sparktrends.MetricsConfig(**profiles.settings_for(symbol))
                result.carries[symbol] = sparktrends.CarryState(bytes(state), config)
            except ValueError:
                continue  # another encoding version, or windows the profile no longer has: warm up
    return result


_SAVE = """
    INSERT INTO metrics_carry (symbol, last_ts, profile, state, generation)
    SELECT symbol, last_ts, profile, state,
           CASE WHEN reset THEN nextval('metrics_carry_generation') ELSE generation END
    FROM carry_in
    ON CONFLICT (symbol) DO UPDATE
        SET last_ts = EXCLUDED.last_ts, profile = EXCLUDED.profile, state = EXCLUDED.state,
            generation = EXCLUDED.generation, updated_at = now()
    RETURNING symbol, generation
"""


def save(
    conn: psycopg.Connection,
    planned: Plan,
    computed: Mapping[str, sparktrends.CarryState],
    appended: set[str],
    profiles: DetectorProfiles,
) -> dict[str, int]:
    """Writes, in the caller's transaction, the carries that must be stored: a fresh generation for a symbol whose
    history changed (not in `appended`) or that warmed up, the same one for a symbol whose row is
    CHECKPOINT_MINUTES behind. Returns every computed symbol's generation after the write."""
    generations = {symbol: row.generation for symbol, row in planned.stored.items()}
    rows = []
    for symbol in sorted(computed):
        carry = computed[symbol]
        if carry.last_ts_us is None:
            continue
        stored = planned.stored.get(symbol)
        reset = symbol not in appended or symbol not in planned.carries or stored is None
        behind = stored is not None and last_ts(carry) - stored.last_ts >= dt.timedelta(minutes=CHECKPOINT_MINUTES)
        if reset or behind:
            rows.append((symbol, last_ts(carry), profiles.profile_of(symbol), carry.to_bytes(), reset,
                         stored.generation if stored else 0))  # fmt: skip
    if rows:
        # Binary COPY: an array parameter of thousands of states is escaped value by value in Python.
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS carry_in (symbol text, last_ts timestamptz, profile text, state bytea, "
            "reset boolean, generation bigint) ON COMMIT DELETE ROWS"
        )
        columns = "symbol, last_ts, profile, state, reset, generation"
        with conn.cursor().copy(f"COPY carry_in ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text", "timestamptz", "text", "bytea", "bool", "int8"])
            for row in rows:
                copy.write_row(row)
        generations.update(conn.execute(_SAVE).fetchall())
    return generations


def remember(
    conn: psycopg.Connection,
    computed: Mapping[str, sparktrends.CarryState],
    generations: Mapping[str, int],
    profiles: DetectorProfiles,
    cache: CarryCache | None = None,
) -> None:
    """After the merge committed: the computed carries are what this driver continues from."""
    cache = cache if cache is not None else CACHE
    database = database_key(conn)
    for symbol, carry in computed.items():
        if symbol in generations and carry.last_ts_us is not None:
            cache.put(database, symbol, _Cached(generations[symbol], _settings_key(profiles, symbol), carry))


def forget(conn: psycopg.Connection, symbols: list[str], cache: CarryCache | None = None) -> None:
    """Deletes the stored carries of `symbols` (a recompute of their history) and drops them from the cache."""
    conn.execute("DELETE FROM metrics_carry WHERE symbol = ANY(%s)", (symbols,))
    (cache if cache is not None else CACHE).drop(database_key(conn), symbols)
