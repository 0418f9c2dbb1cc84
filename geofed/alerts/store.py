"""The alerts' durable state, in the job store's database (SQLite by default, PostgreSQL when scaled out).

Three tables beside the jobs table, reached through the job store's own connection handling (one SQLite
connection per thread in WAL mode, or the psycopg pool), so alerts add no second database:

- `geofed_alert_state`: named rows with a lease (`watcher`: which replica polls the upstreams) or a value
  (`watch:<collection>`: the durable watermark, the last poll, counters).
- `geofed_alert_subscriptions`: one row per area subscription (its document as JSON, the key digest that owns
  it, the webhook signing secret).
- `geofed_alert_events`: the outbox *and* the event log. An event's id is its idempotency key (derived from
  subscription, collection, item and publication time), so a poll repeated after a crash or by a second replica
  inserts nothing twice (`ON CONFLICT DO NOTHING`). Pending events are leased in batches for delivery
  (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so several replicas deliver each event once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from geofed.jobs.store import ANY_OWNER, JobStore, PostgresStore

STATE = "geofed_alert_state"
SUBSCRIPTIONS = "geofed_alert_subscriptions"
EVENTS = "geofed_alert_events"
EVENT_COLUMNS = ("id", "subscription", "collection", "item_id", "target", "address", "status", "attempts",
                 "created", "next_try", "delivered", "last_error", "lease_owner", "lease_until", "message")
# pending: waiting for (re)delivery; delivered; dead: gave up after the last attempt; stored: pull only
STATUSES = ("pending", "delivered", "dead", "stored")
SETTLED = ("status", "attempts", "next_try", "delivered", "last_error")  # what a delivery attempt writes


@dataclass
class Event:
    id: str  # the idempotency key
    subscription: str  # subscription id, or "" for the collection's own channel
    collection: str
    item_id: str
    target: str  # "pull" | "mqtt" | "webhook" | "collection"
    address: str | None  # MQTT topic or webhook URL
    message: str  # the body delivered, exactly (what a webhook signature covers)
    status: str = "pending"
    attempts: int = 0
    created: float = 0.0
    next_try: float = 0.0
    delivered: float | None = None
    last_error: str | None = None
    lease_owner: str | None = None
    lease_until: float | None = None


def _event(row: dict[str, Any]) -> Event:
    return Event(**row)


class AlertStore:
    """SQL over a `JobStore`'s connections (same placeholders and dialect switches)."""

    def __init__(self, jobs: JobStore) -> None:
        self.jobs = jobs
        self.migrate()

    # ------------------------------------------------------------------ plumbing
    def _run(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = conn.execute(self.jobs._sql(sql), tuple(params))
        if cur.description is None:
            return []
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def _many(self, conn: Any, sql: str, rows: list[Sequence[Any]]) -> None:
        """One statement over many parameter rows (sqlite3 and psycopg both batch `executemany`)."""
        if rows:
            conn.cursor().executemany(self.jobs._sql(sql), [tuple(r) for r in rows])

    def _execute(self, sql: str, params: Sequence[Any] = (), write: bool = False) -> list[dict[str, Any]]:
        with self.jobs._connect(write) as conn:
            return self._run(conn, sql, params)

    def migrate(self) -> None:
        f = self.jobs.float_type
        ddl = [
            f"CREATE TABLE IF NOT EXISTS {STATE} (name TEXT PRIMARY KEY, value TEXT, owner TEXT, until {f},"
            f" updated {f})",
            f"CREATE TABLE IF NOT EXISTS {SUBSCRIPTIONS} (id TEXT PRIMARY KEY, owner TEXT, created {f} NOT NULL,"
            " doc TEXT NOT NULL, secret TEXT)",
            f"CREATE TABLE IF NOT EXISTS {EVENTS} (id TEXT PRIMARY KEY, subscription TEXT NOT NULL,"
            " collection TEXT NOT NULL, item_id TEXT NOT NULL, target TEXT NOT NULL, address TEXT,"
            f" status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, created {f} NOT NULL,"
            f" next_try {f} NOT NULL, delivered {f}, last_error TEXT, lease_owner TEXT, lease_until {f},"
            " message TEXT NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS {EVENTS}_due ON {EVENTS} (status, next_try)",
            f"CREATE INDEX IF NOT EXISTS {EVENTS}_sub ON {EVENTS} (subscription, created)",
        ]
        with self.jobs._connect(write=True) as conn:
            if isinstance(self.jobs, PostgresStore):  # replicas start together: serialise the DDL
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x6765_6F67,))
            for statement in ddl:
                conn.execute(statement)

    # ------------------------------------------------------------------ leases and state
    def lease(self, name: str, owner: str, now: float, ttl: float) -> bool:
        """Takes or renews the lease `name` for `owner`; False while another owner's lease runs."""
        rows = self._execute(
            f"INSERT INTO {STATE} (name, owner, until, updated) VALUES (%s, %s, %s, %s)"
            f" ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until,"
            f" updated = excluded.updated WHERE {STATE}.owner = excluded.owner OR {STATE}.owner IS NULL"
            f" OR {STATE}.until IS NULL OR {STATE}.until < %s RETURNING name",
            [name, owner, now + ttl, now, now], write=True,
        )
        return bool(rows)

    def release(self, name: str, owner: str) -> None:
        self._execute(f"UPDATE {STATE} SET owner = NULL, until = NULL WHERE name = %s AND owner = %s",
                      [name, owner], write=True)

    def state(self, prefix: str = "") -> dict[str, dict[str, Any]]:
        rows = self._execute(f"SELECT name, value, owner, until, updated FROM {STATE}")
        out = {}
        for row in rows:
            if row["name"].startswith(prefix):
                row["value"] = json.loads(row["value"]) if row["value"] else None
                out[row["name"]] = row
        return out

    def commit_poll(self, name: str, value: dict[str, Any], events: list[Event], lease: tuple[str, str]) -> bool:
        """One transaction: the new events (duplicates ignored) and the watermark. Nothing is written when
        `lease` = (lease name, owner) is not held any more (another replica took over the watcher)."""
        with self.jobs._connect(write=True) as conn:
            held = self._run(conn, f"SELECT owner FROM {STATE} WHERE name = %s AND owner = %s FOR UPDATE"
                             if isinstance(self.jobs, PostgresStore) else
                             f"SELECT owner FROM {STATE} WHERE name = %s AND owner = %s", list(lease))
            if not held:
                return False
            self._many(conn, f"INSERT INTO {EVENTS} ({', '.join(EVENT_COLUMNS)}) VALUES"
                       f" ({', '.join(['%s'] * len(EVENT_COLUMNS))}) ON CONFLICT (id) DO NOTHING",
                       [[getattr(event, c) for c in EVENT_COLUMNS] for event in events])
            self._run(conn, f"INSERT INTO {STATE} (name, value, updated) VALUES (%s, %s, %s) ON CONFLICT (name)"
                      " DO UPDATE SET value = excluded.value, updated = excluded.updated",
                      [name, json.dumps(value), time.time()])
        return True

    # ------------------------------------------------------------------ subscriptions
    def add_subscription(self, sub_id: str, owner: str | None, doc: dict[str, Any], secret: str | None) -> None:
        self._execute(f"INSERT INTO {SUBSCRIPTIONS} (id, owner, created, doc, secret) VALUES (%s, %s, %s, %s, %s)",
                      [sub_id, owner, time.time(), json.dumps(doc), secret], write=True)

    def subscription(self, sub_id: str) -> dict[str, Any] | None:
        rows = self._execute(f"SELECT id, owner, created, doc, secret FROM {SUBSCRIPTIONS} WHERE id = %s", [sub_id])
        return _sub(rows[0]) if rows else None

    def subscriptions(self, owner: Any = ANY_OWNER, limit: int | None = None,
                      offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        where, params = "", []
        if owner is not ANY_OWNER:
            where, params = (" WHERE owner IS NULL", []) if owner is None else (" WHERE owner = %s", [owner])
        count = self._execute(f"SELECT COUNT(*) AS n FROM {SUBSCRIPTIONS}{where}", params)[0]["n"]
        page = " LIMIT %s OFFSET %s" if limit is not None else ""
        rows = self._execute(f"SELECT id, owner, created, doc, secret FROM {SUBSCRIPTIONS}{where}"
                             f" ORDER BY created DESC, id{page}", [*params, *([limit, offset] if page else [])])
        return [_sub(r) for r in rows], int(count)

    def delete_subscription(self, sub_id: str) -> bool:
        with self.jobs._connect(write=True) as conn:
            gone = self._run(conn, f"DELETE FROM {SUBSCRIPTIONS} WHERE id = %s RETURNING id", [sub_id])
            self._run(conn, f"DELETE FROM {EVENTS} WHERE subscription = %s", [sub_id])
        return bool(gone)

    # ------------------------------------------------------------------ events
    def events(self, sub_id: str, limit: int, offset: int) -> tuple[list[Event], int]:
        count = self._execute(f"SELECT COUNT(*) AS n FROM {EVENTS} WHERE subscription = %s", [sub_id])[0]["n"]
        rows = self._execute(f"SELECT {', '.join(EVENT_COLUMNS)} FROM {EVENTS} WHERE subscription = %s"
                             " ORDER BY created DESC, id LIMIT %s OFFSET %s", [sub_id, limit, offset])
        return [_event(r) for r in rows], int(count)

    def counts(self, sub_id: str) -> dict[str, int]:
        rows = self._execute(f"SELECT status, COUNT(*) AS n FROM {EVENTS} WHERE subscription = %s GROUP BY status",
                             [sub_id])
        return {r["status"]: int(r["n"]) for r in rows}

    def dead(self, sub_id: str, limit: int = 20) -> list[Event]:
        rows = self._execute(f"SELECT {', '.join(EVENT_COLUMNS)} FROM {EVENTS} WHERE subscription = %s"
                             " AND status = 'dead' ORDER BY created DESC LIMIT %s", [sub_id, limit])
        return [_event(r) for r in rows]

    def claim_due(self, owner: str, now: float, lease: float, limit: int) -> list[Event]:
        due = (f"SELECT id FROM {EVENTS} WHERE status = 'pending' AND next_try <= %s"
               " AND (lease_until IS NULL OR lease_until < %s)")
        if not self._execute(f"{due} LIMIT 1", [now, now]):  # most ticks: nothing due, no write lock
            return []
        rows = self._execute(
            f"UPDATE {EVENTS} SET lease_owner = %s, lease_until = %s WHERE id IN ({due} ORDER BY next_try"
            f" LIMIT %s{self.jobs.skip_locked}) RETURNING {', '.join(EVENT_COLUMNS)}",
            [owner, now + lease, now, now, limit], write=True,
        )
        return [_event(r) for r in rows]

    def settle(self, owner: str, outcomes: list[tuple[str, dict[str, Any]]]) -> None:
        """Writes delivery outcomes (event id, changes) in one transaction and one batched statement, dropping
        the leases; an event whose lease `owner` lost meanwhile is left alone."""
        rows = [[changes.get(c) for c in SETTLED] + [event_id, owner] for event_id, changes in outcomes]
        with self.jobs._connect(write=True) as conn:
            self._many(conn, f"UPDATE {EVENTS} SET {', '.join(f'{c} = %s' for c in SETTLED)}, lease_owner = NULL,"
                       " lease_until = NULL WHERE id = %s AND lease_owner = %s", rows)

    def release_events(self, owner: str) -> None:
        self._execute(f"UPDATE {EVENTS} SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = %s"
                      " AND status = 'pending'", [owner], write=True)

    def prune(self, before: float) -> int:
        """Forgets settled events older than `before` (the pending and dead ones stay)."""
        rows = self._execute(f"DELETE FROM {EVENTS} WHERE status IN ('delivered', 'stored') AND created < %s"
                             " RETURNING id", [before], write=True)
        return len(rows)


def _sub(row: dict[str, Any]) -> dict[str, Any]:
    return {**json.loads(row["doc"]), "id": row["id"], "owner": row["owner"], "created": row["created"],
            "secret": row["secret"]}
