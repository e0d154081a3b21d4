"""The fleet index: one embedded DuckDB file (no server).

Tables
    meta              key/value: schema version, what made the file
    dumps             one row per dump (content id): where, what, the facts, the triage JSON
    files             every path seen (size, mtime) → its dump: a re-run skips unchanged files
                      without opening them, and a copy at a new path is known by its content
    runs              one row per ingest
    rebucket_history  old → new signature of every row, per rebucket run

Safety
    * A file that is not an index (garbage, another database, a newer schema) is an error
      naming it and is never written to. A new index is built under a temporary name and linked
      into place, so a half-made index never carries the name.
    * Writers take an exclusive lock on INDEX.lock (flock: released by the kernel even when the
      writer is killed); a second writer waits `wait` seconds, then refuses.
    * Every batch of rows is one transaction (DuckDB's WAL makes it atomic): a killed ingest
      leaves whole batches, and a re-run inserts only what is missing (content id is the key).
    * Writers hold the database open only while writing a batch, readers (the dashboard) only
      per request, so `fleet serve` keeps working during an ingest.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from typing import Any

from ..errors import FleetBusyError, FleetIndexError

SCHEMA_VERSION = 1
MAGIC = "vmcorekit-fleet-index"

# (column, DuckDB type) of `dumps`, in order. Lists are VARCHAR[]; times are UNIX seconds.
DUMP_COLUMNS: list[tuple[str, str]] = [
    ("content_id", "VARCHAR PRIMARY KEY"), ("path", "VARCHAR"), ("parts", "INTEGER"), ("size", "BIGINT"),
    ("format", "VARCHAR"), ("status", "VARCHAR"), ("error", "VARCHAR"),
    ("release", "VARCHAR"), ("build", "VARCHAR"), ("build_id", "VARCHAR"), ("arch", "VARCHAR"),
    ("hostname", "VARCHAR"), ("crash_time", "DOUBLE"), ("uptime", "DOUBLE"),
    ("title", "VARCHAR"), ("class", "VARCHAR"), ("title_source", "VARCHAR"), ("kind", "VARCHAR"),
    ("guilty_function", "VARCHAR"), ("guilty_module", "VARCHAR"), ("guilty_offset", "VARCHAR"),
    ("signature", "VARCHAR"), ("rules_version", "VARCHAR"), ("reason", "VARCHAR"),
    ("panic_cpu", "INTEGER"), ("panic_pid", "INTEGER"), ("panic_comm", "VARCHAR"),
    ("taint_mask", "BIGINT"), ("taint", "VARCHAR"), ("modules", "VARCHAR[]"), ("explanation", "VARCHAR"),
    ("title_lines", "VARCHAR[]"), ("stack_frames", "VARCHAR[]"), ("failed_sections", "VARCHAR[]"),
    ("notes", "VARCHAR[]"),
    ("hash_seconds", "DOUBLE"), ("triage_seconds", "DOUBLE"), ("worker_seconds", "DOUBLE"),
    ("worker_rss_kb", "BIGINT"), ("worker", "VARCHAR"), ("ingested_at", "DOUBLE"), ("run", "INTEGER"),
    ("triage", "VARCHAR"),
    ("minidump", "VARCHAR"),  # the minidump kept by `ingest --keep-minidump` (added after schema 1's first rows)
]
DUMP_NAMES = [c for c, _ in DUMP_COLUMNS]
# Columns that differ between two ingests of the same dumps (when and where it ran, how long).
TIMING_COLUMNS = {"hash_seconds", "triage_seconds", "worker_seconds", "worker_rss_kb", "worker", "ingested_at", "run"}

SCHEMA = [
    "CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    "CREATE TABLE dumps (" + ", ".join(f"{c} {t}" for c, t in DUMP_COLUMNS) + ")",
    "CREATE TABLE files (path VARCHAR PRIMARY KEY, size BIGINT, mtime_ns BIGINT, content_id VARCHAR, "
    "seen_at DOUBLE)",
    "CREATE TABLE runs (run INTEGER PRIMARY KEY, started DOUBLE, finished DOUBLE, executor VARCHAR, "
    "seen INTEGER, new INTEGER, failed INTEGER, seconds DOUBLE)",
    "CREATE TABLE rebucket_history (run INTEGER, at_time DOUBLE, content_id VARCHAR, old_signature VARCHAR, "
    "new_signature VARCHAR, old_title VARCHAR, new_title VARCHAR, old_rules_version VARCHAR, "
    "new_rules_version VARCHAR)",
]
OPEN_RETRY = 30.0  # seconds to wait for another process's brief hold on the file


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError:
        from ..errors import FleetError
        raise FleetError("the fleet index needs the 'duckdb' package: pip install 'vmcorekit[fleet]'") from None
    return duckdb


def _is_lock_conflict(e: Exception) -> bool:
    s = str(e)
    return "lock" in s.lower() and ("Conflicting" in s or "Could not set lock" in s)


def _open(path: str, read_only: bool, retry: float) -> Any:
    duckdb = _duckdb()
    deadline = time.monotonic() + retry
    delay = 0.02
    while True:
        try:
            return duckdb.connect(path, read_only=read_only)
        except duckdb.Error as e:
            if _is_lock_conflict(e):
                if time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.5)
                    continue
                raise FleetBusyError(f"{path}: the index is busy (another process has it open for writing); "
                                     "try again") from None
            raise FleetIndexError(path, f"not a vmcorekit fleet index ({' '.join(str(e).split())})") from None


def _check(con: Any, path: str) -> None:
    duckdb = _duckdb()
    try:
        rows = dict(con.execute("SELECT key, value FROM meta").fetchall())
    except duckdb.Error:
        raise FleetIndexError(path, "not a vmcorekit fleet index (a DuckDB file without its tables)") from None
    if rows.get("magic") != MAGIC:
        raise FleetIndexError(path, "not a vmcorekit fleet index (no vmcorekit marker in its meta table)")
    v = int(rows.get("schema_version") or 0)
    if v > SCHEMA_VERSION:
        raise FleetIndexError(path, f"index schema {v} is newer than this vmcorekit reads ({SCHEMA_VERSION})")


def _add_columns(con: Any) -> None:
    """Columns appended to `dumps` since the index was made (NULL in its older rows)."""
    have = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                      "WHERE table_name = 'dumps'").fetchall()}
    for name, typ in DUMP_COLUMNS:
        if name not in have:
            con.execute(f"ALTER TABLE dumps ADD COLUMN {name} {typ}")


def has_column(con: Any, name: str) -> bool:
    """Whether the index's `dumps` has `name` (an index no newer writer has opened may not)."""
    return bool(con.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'dumps' "
                            "AND column_name = ?", [name]).fetchone()[0])


def create(path: str) -> None:
    """A new, empty index at `path` (FileExistsError if something is there already)."""
    duckdb = _duckdb()
    folder = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)[:200]}.{os.urandom(6).hex()}.tmp")
    try:
        con = duckdb.connect(tmp)
        try:
            for stmt in SCHEMA:
                con.execute(stmt)
            con.executemany("INSERT INTO meta VALUES (?, ?)", [("magic", MAGIC), ("schema_version", str(SCHEMA_VERSION)),
                                                             ("created", str(time.time()))])
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.chmod(tmp, 0o600)  # the index holds kernel logs
        try:
            os.link(tmp, path)  # never replaces an existing file
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            # No hard links here (some network filesystems): callers hold the writers' lock, so
            # checking first and renaming cannot race another ingest.
            if os.path.lexists(path):
                raise FileExistsError(errno.EEXIST, "exists", path) from None
            os.rename(tmp, path)
    finally:
        for p in (tmp, tmp + ".wal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)


@contextlib.contextmanager
def connect(path: str, *, read_only: bool = False, create_missing: bool = False,
            retry: float = OPEN_RETRY) -> Iterator[Any]:
    """A checked connection to the index, closed on leaving."""
    if not os.path.exists(path):
        if not create_missing:
            raise FleetIndexError(path, "no such index (make one with `vmcorekit fleet ingest`)")
        try:
            create(path)
        except FileExistsError:
            pass
    if os.path.isdir(path):
        raise FleetIndexError(path, "is a folder, expected an index file")
    con = _open(path, read_only, retry)
    try:
        _check(con, path)
        if not read_only:
            _add_columns(con)
        yield con
    finally:
        con.close()


@contextlib.contextmanager
def locked(path: str, wait: float = 10.0) -> Iterator[None]:
    """The writers' lock (INDEX.lock beside the index) for the block; FleetBusyError after
    `wait` seconds."""
    lock = os.path.abspath(path) + ".lock"
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    try:
                        holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                    except OSError:
                        holder = ""
                    who = f" (pid {holder})" if holder.isdigit() else ""
                    raise FleetBusyError(f"{path}: another ingest or rebucket is writing this index{who}; "
                                         f"lock {lock}") from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def known_files(path: str) -> tuple[dict[str, tuple[int, int, str]], set[str]]:
    """(path → (size, mtime_ns, content id) of every file already indexed, every content id in
    the index)."""
    with connect(path, read_only=True) as con:
        files = {p: (s, m, c) for p, s, m, c in
                 con.execute("SELECT path, size, mtime_ns, content_id FROM files").fetchall()}
        ids = {r[0] for r in con.execute("SELECT content_id FROM dumps").fetchall()}
    return files, ids


def new_run(path: str, executor: str) -> int:
    with connect(path) as con:
        run = con.execute("SELECT coalesce(max(run), 0) + 1 FROM runs").fetchone()[0]
        con.execute("INSERT INTO runs VALUES (?, ?, NULL, ?, NULL, NULL, NULL, NULL)", [run, time.time(), executor])
    return int(run)


def finish_run(path: str, run: int, seen: int, new: int, failed: int, seconds: float) -> None:
    with connect(path) as con:
        con.execute("UPDATE runs SET finished = ?, seen = ?, new = ?, failed = ?, seconds = ? WHERE run = ?",
                    [time.time(), seen, new, failed, seconds, run])


def write_batch(path: str, dumps: list[dict[str, Any]], files: list[tuple[str, int, int, str]]) -> int:
    """One transaction: the dump rows (skipping content ids already present) and the files
    seen. Returns how many dump rows were added."""
    if not dumps and not files:
        return 0
    with connect(path) as con:
        con.execute("BEGIN")
        try:
            if files:
                # A path that once could not be read had a stand-in row (facts.path_id): its
                # content is known now, so the stand-in goes.
                con.executemany("DELETE FROM dumps WHERE content_id LIKE 'path-%' AND path = ?",
                                [(p,) for p, _s, _m, _c in files])
            before = con.execute("SELECT count(*) FROM dumps").fetchone()[0]
            if dumps:
                marks = ", ".join("?" for _ in DUMP_NAMES)
                con.executemany(f"INSERT INTO dumps ({', '.join(DUMP_NAMES)}) VALUES ({marks}) "
                                "ON CONFLICT (content_id) DO NOTHING",
                                [[d.get(c) for c in DUMP_NAMES] for d in dumps])
            if files:
                now = time.time()
                con.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                                [(p, s, m, cid, now) for p, s, m, cid in files])
            added = con.execute("SELECT count(*) FROM dumps").fetchone()[0] - before
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                con.execute("ROLLBACK")
            raise
    return int(added)


def export_parquet(path: str, out_dir: str) -> list[str]:
    """Every table as OUT_DIR/<table>.parquet, each written under a temporary name and renamed
    when complete (mode 0600: the rows hold kernel logs)."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    with connect(path, read_only=True) as con:
        for table in ("dumps", "files", "runs", "rebucket_history"):
            final = os.path.join(out_dir, f"{table}.parquet")
            tmp = os.path.join(out_dir, f".{table}.{os.urandom(6).hex()}.parquet.tmp")
            try:
                con.execute(f"COPY {table} TO '{tmp.replace(chr(39), chr(39) * 2)}' (FORMAT parquet)")
                os.chmod(tmp, 0o600)
                os.replace(tmp, final)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            written.append(final)
    return written
