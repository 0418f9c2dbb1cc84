"""The durable job store: one table, SQLite by default, PostgreSQL when scaled out.

Every replica and every restart reads the same rows, so the store is the only state a job has: no job lives
in memory only. Two mechanisms make concurrent writers safe:

- **Conditional writes** (`update(..., if_status=ACTIVE)`): the poller's "successful" cannot overwrite a
  "dismissed" written meanwhile by another request or replica.
- **Leases** (`claim_due` / `claim`): one poller at a time asks the upstream about a job; a lease expires on
  its own, so a killed replica's jobs are picked up by the others (or by itself after a restart, see
  `release_owner`).

The SQL is written once with `%s` placeholders; the SQLite flavour swaps them for `?`.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ACTIVE: tuple[str, ...] = ("accepted", "running")
FINAL: tuple[str, ...] = ("successful", "failed", "dismissed")
STATUSES: tuple[str, ...] = ACTIVE + FINAL
TABLE = "geofed_jobs"
LOCAL_LEASE = 120.0  # seconds a server's hold on a job running in it lasts unless renewed (every LOCAL_LEASE / 4)

ANY_OWNER: Any = object()  # `list(owner=ANY_OWNER)`: no access filter (API keys not configured)


@dataclass
class JobRecord:
    id: str
    process_id: str
    status: str = "accepted"
    kind: str = "upstream"  # "upstream": the work runs upstream (durable); "local": a thread in one server
    owner: str | None = None  # hash of the API key that created the job
    inputs: dict[str, Any] | None = None
    handle: dict[str, Any] | None = None
    progress: int | None = None
    message: str | None = None
    mimetype: str | None = None
    result: bytes | None = None
    error: dict[str, Any] | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    updated: float = field(default_factory=time.time)
    next_poll: float | None = None
    lease_owner: str | None = None
    lease_until: float | None = None
    poll_failures: int = 0

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(JobRecord))
LIST_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c != "result")  # listings never need payloads
_JSON = frozenset({"inputs", "handle", "error"})


def iso(ts: float | None) -> str | None:
    """RFC 3339 UTC timestamp (what OGC API – Processes status documents carry)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _encode(name: str, value: Any) -> Any:
    if name in _JSON and value is not None:
        return json.dumps(value, separators=(",", ":"))
    return value


def _decode(row: dict[str, Any]) -> JobRecord:
    data = dict(row)
    for name in _JSON:
        if isinstance(data.get(name), str):
            data[name] = json.loads(data[name])
    if isinstance(data.get("result"), memoryview):
        data["result"] = bytes(data["result"])
    return JobRecord(**data)


class JobStore:
    """Dialect-neutral job store. Subclasses provide `_connect()` (a transaction) and the DDL types."""

    blob_type = "BLOB"
    float_type = "REAL"
    placeholder = "%s"
    skip_locked = ""

    def __init__(self, table: str = TABLE) -> None:
        if not table.replace("_", "").isalnum():
            raise ValueError(f"invalid job table name {table!r}")
        self.table = table

    # ------------------------------------------------------------------ dialect hooks
    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[Any]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield

    def _sql(self, sql: str) -> str:
        return sql.replace("%s", self.placeholder).replace("{t}", self.table)

    def _execute(self, sql: str, params: Sequence[Any] = (), write: bool = False) -> list[dict[str, Any]]:
        with self._connect(write) as conn:
            cur = conn.execute(self._sql(sql), tuple(params))
            if cur.description is None:
                return []
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def ddl(self) -> list[str]:
        f, b = self.float_type, self.blob_type
        return [
            f"""CREATE TABLE IF NOT EXISTS {{t}} (
                id TEXT PRIMARY KEY, process_id TEXT NOT NULL, status TEXT NOT NULL, kind TEXT NOT NULL,
                owner TEXT, inputs TEXT, handle TEXT, progress INTEGER, message TEXT, mimetype TEXT,
                result {b}, error TEXT, created {f} NOT NULL, started {f}, finished {f}, updated {f} NOT NULL,
                next_poll {f}, lease_owner TEXT, lease_until {f}, poll_failures INTEGER NOT NULL DEFAULT 0)""",
            "CREATE INDEX IF NOT EXISTS {t}_created ON {t} (created)",
            "CREATE INDEX IF NOT EXISTS {t}_due ON {t} (status, next_poll)",
        ]

    def migrate(self) -> None:
        for statement in self.ddl():
            self._execute(statement, write=True)

    # ------------------------------------------------------------------ reads
    def get(self, job_id: str) -> JobRecord | None:
        rows = self._execute(f"SELECT {', '.join(COLUMNS)} FROM {{t}} WHERE id = %s", [job_id])
        return _decode(rows[0]) if rows else None

    def list(
        self,
        *,
        owner: Any = ANY_OWNER,
        process_ids: Sequence[str] | None = None,
        statuses: Sequence[str] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> tuple[list[JobRecord], int]:
        """One page of jobs, newest first, and the number matched."""
        where, params = self._filters(owner, process_ids, statuses)
        count = self._execute(f"SELECT COUNT(*) AS n FROM {{t}}{where}", params)[0]["n"]
        rows = self._execute(
            f"SELECT {', '.join(LIST_COLUMNS)} FROM {{t}}{where} ORDER BY created DESC, id LIMIT %s OFFSET %s",
            [*params, limit, offset],
        )
        return [_decode(r) for r in rows], int(count)

    @staticmethod
    def _filters(owner: Any, process_ids: Sequence[str] | None, statuses: Sequence[str] | None) -> tuple[str, list]:
        clauses: list[str] = []
        params: list[Any] = []
        if owner is not ANY_OWNER:
            if owner is None:
                clauses.append("owner IS NULL")
            else:
                clauses.append("owner = %s")
                params.append(owner)
        for column, values in (("process_id", process_ids), ("status", statuses)):
            if values:
                clauses.append(f"{column} IN ({', '.join(['%s'] * len(values))})")
                params.extend(values)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    # ------------------------------------------------------------------ writes
    def insert(self, job: JobRecord) -> None:
        values = [_encode(c, getattr(job, c)) for c in COLUMNS]
        self._execute(
            f"INSERT INTO {{t}} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})",
            values,
            write=True,
        )

    def update(
        self,
        job_id: str,
        changes: dict[str, Any],
        *,
        if_status: Sequence[str] | None = None,
        if_lease: str | None = None,
    ) -> bool:
        """Writes `changes` (always stamping `updated`); with `if_status`/`if_lease` only when the stored row still
        has one of those statuses / is still leased by that owner. Returns whether a row changed."""
        changes = {"updated": time.time(), **changes}
        unknown = set(changes) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown job fields {sorted(unknown)}")
        sets = ", ".join(f"{c} = %s" for c in changes)
        params = [_encode(c, v) for c, v in changes.items()] + [job_id]
        sql = f"UPDATE {{t}} SET {sets} WHERE id = %s"
        if if_status:
            sql += f" AND status IN ({', '.join(['%s'] * len(if_status))})"
            params.extend(if_status)
        if if_lease is not None:
            sql += " AND lease_owner = %s"
            params.append(if_lease)
        return bool(self._execute(sql + " RETURNING id", params, write=True))

    def delete(self, job_id: str) -> bool:
        return bool(self._execute("DELETE FROM {t} WHERE id = %s RETURNING id", [job_id], write=True))

    # ------------------------------------------------------------------ leases (who polls the upstream)
    def claim_due(self, owner: str, now: float, lease: float, limit: int) -> list[JobRecord]:
        """Leases up to `limit` upstream jobs that are due for a poll and not leased by anyone else."""
        return self._claim("", [], owner, now, lease, limit)

    def claim(self, job_id: str, owner: str, now: float, lease: float) -> JobRecord | None:
        """Leases one job if it is due; None when it is not due or another poller holds it."""
        claimed = self._claim(" AND id = %s", [job_id], owner, now, lease, 1)
        return claimed[0] if claimed else None

    def _claim(
        self, extra: str, extra_params: list[Any], owner: str, now: float, lease: float, limit: int
    ) -> list[JobRecord]:
        statuses = ", ".join(["%s"] * len(ACTIVE))
        due = (
            f"SELECT id FROM {{t}} WHERE kind = 'upstream' AND status IN ({statuses}) AND handle IS NOT NULL"
            f" AND COALESCE(next_poll, 0) <= %s AND (lease_until IS NULL OR lease_until < %s){extra}"
        )
        due_params = [*ACTIVE, now, now, *extra_params]
        # a plain read first: most ticks find nothing due, and then take no write lock at all
        if not self._execute(f"{due} LIMIT 1", due_params):
            return []
        sql = (
            f"UPDATE {{t}} SET lease_owner = %s, lease_until = %s WHERE id IN ("
            f"{due} ORDER BY next_poll LIMIT %s{self.skip_locked}) RETURNING {', '.join(COLUMNS)}"
        )
        return [_decode(r) for r in self._execute(sql, [owner, now + lease, *due_params, limit], write=True)]

    def release_owner(self, owner: str) -> int:
        """Drops the leases `owner` held on upstream jobs before a restart, so they are polled at once."""
        rows = self._execute(
            "UPDATE {t} SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = %s AND kind = 'upstream'"
            " RETURNING id",
            [owner],
            write=True,
        )
        return len(rows)

    def fail_orphans(self, now: float, submit_cutoff: float, local_owner: str | None = None) -> list[str]:
        """Fails the jobs that cannot progress any more: upstream jobs whose submission never stored a handle (a
        server died mid-submit), local (threaded) jobs whose server stopped renewing their lease (it died) and,
        with `local_owner`, that server's local jobs (it restarted or is stopping: their threads are gone)."""
        statuses = ", ".join(["%s"] * len(ACTIVE))
        local = " OR lease_owner = %s" if local_owner else ""
        restarted = "interrupted by a server restart; submit the job again"
        cut = "the upstream submission was interrupted; submit the job again"
        errors = [_encode("error", {"status": status, "code": "JobInterrupted", "detail": detail})
                  for status, detail in ((503, restarted), (502, cut))]
        rows = self._execute(
            "UPDATE {t} SET status = 'failed', finished = %s, updated = %s, lease_owner = NULL, lease_until = NULL,"
            " message = CASE WHEN kind = 'local' THEN %s ELSE %s END,"
            " error = CASE WHEN kind = 'local' THEN %s ELSE %s END"
            f" WHERE status IN ({statuses}) AND ((kind = 'upstream' AND handle IS NULL AND created < %s)"
            f" OR (kind = 'local' AND (COALESCE(lease_until, updated + %s) < %s{local})))"
            " RETURNING id",
            [now, now, restarted, cut, *errors, *ACTIVE, submit_cutoff, LOCAL_LEASE, now,
             *([local_owner] if local_owner else [])],
            write=True,
        )
        return [r["id"] for r in rows]

    def close(self) -> None:  # pragma: no cover - overridden
        pass


class SqliteStore(JobStore):
    """SQLite in WAL mode: several threads and processes on one host (one connection per thread)."""

    placeholder = "?"

    def __init__(self, path: Path | str, table: str = TABLE) -> None:
        super().__init__(table)
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conn().execute("PRAGMA journal_mode=WAL")  # outside any transaction, as SQLite requires
        self.migrate()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # autocommit mode (isolation_level=None): transactions are explicit below
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        if not write:
            yield conn
            return
        # IMMEDIATE takes the write lock up front: a claim's SELECT and UPDATE see the same snapshot
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


class PostgresStore(JobStore):
    """PostgreSQL through a psycopg 3 connection pool: many workers and replicas on one table."""

    blob_type = "BYTEA"
    float_type = "DOUBLE PRECISION"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, conninfo: str, table: str = TABLE, max_size: int = 10) -> None:
        from psycopg_pool import ConnectionPool

        super().__init__(table)
        self.pool = ConnectionPool(
            conninfo, min_size=1, max_size=max_size, open=True, name="geofed-jobs", timeout=30,
            kwargs={"autocommit": False},
        )
        self.migrate()

    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[Any]:
        with self.pool.connection() as conn:  # commits on success, rolls back on error
            yield conn

    def migrate(self) -> None:
        # replicas start together: an advisory lock serialises the CREATE ... IF NOT EXISTS statements,
        # which otherwise race on PostgreSQL's catalog
        with self._connect(write=True) as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x6765_6F66,))
            for statement in self.ddl():
                conn.execute(self._sql(statement))

    def close(self) -> None:
        self.pool.close()


_stores: dict[tuple[str, str], JobStore] = {}
_stores_lock = threading.Lock()


def open_store(connection: str, table: str = TABLE) -> JobStore:
    """The store for `connection` (a `postgresql://` URL or a SQLite file path), shared by the process: pygeoapi
    instantiates its manager several times, they must not each open a pool."""
    key = (connection, table)
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            if connection.startswith(("postgresql://", "postgres://")):
                store = PostgresStore(connection, table)
            else:
                store = SqliteStore(connection.removeprefix("sqlite:///"), table)
            _stores[key] = store
        return store


def close_stores() -> None:
    with _stores_lock:
        for store in _stores.values():
            store.close()
        _stores.clear()
