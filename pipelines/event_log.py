"""The embedded instance's event log: Dagster's SQLite storage, one open connection per database.

Dagster's `SqliteEventLogStorage` opens a new engine and connection for every read and write
(a run of the sample stores and reads about 2,000 times), and closing the last connection of a
WAL database checkpoints it: a second and a half of a ten-second run, much more on a busy disk.
This storage keeps one connection per database file (the index and the few most recent runs'
files; older ones are closed), with `synchronous=NORMAL`, the setting SQLite recommends with
WAL: a power cut may lose the last events, never corrupt the database.

The UI follows a run's events by watching its database file (`SqliteEventLogStorageWatchdog`);
with a connection left open, writes stay in the WAL file, so after each write to a run's
database its file is touched, and the UI still sees each event as it is stored. The database
files, their layout and schema are Dagster's own: the UI, `dagster` commands and another
instance read them as usual. Declared in `dagster.yaml` (`event_log_storage`, with its `base_dir`
where Dagster's `storage: sqlite` puts the event log: `<base>/history/runs`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import dagster._check as check
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from dagster._core.storage.sql import create_engine
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

OPEN_DATABASES = 4  # the index and the runs being written or watched


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` keeping a connection open per database (see the module)."""

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        """The shard's engine (one connection, reused), the least recently used closed beyond
        `OPEN_DATABASES`."""
        engine = self._engines.pop(shard, None)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=StaticPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            event.listen(engine, "connect", _durable_enough)
            while len(self._engines) >= OPEN_DATABASES:
                self._engines.popitem(last=False)[1].dispose()
        self._engines[shard] = engine
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:  # one thread at a time, as in Dagster's storage
            check.str_param(shard, "shard")
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn:
                before = conn.connection.dbapi_connection.total_changes
                with conn.begin():
                    yield conn
                wrote = conn.connection.dbapi_connection.total_changes != before
            if wrote and shard != INDEX_SHARD_NAME:
                _touch(self.path_for_shard(shard))

    def wipe(self) -> None:
        self._close_all()
        super().wipe()

    def dispose(self) -> None:
        self._close_all()
        super().dispose()

    def _close_all(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()


def _durable_enough(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def _touch(path: str) -> None:
    """Tell the file's watchers (the UI following a run) that the run has new events."""
    try:
        os.utime(path)
    except FileNotFoundError:  # wiped meanwhile
        pass
