"""Moving one domain's data between databases, and recording the move in the config file.

``flask --app blog extract <domain>`` and ``inline <domain>`` are built from the pieces here.

A move, not a copy: afterwards exactly one database owns the domain's rows. Two live copies
would drift apart without anyone noticing (the monolith no longer touches an extracted domain's
tables, so its copy would rot and come back stale on the next ``inline``).

The order is what makes a move safe to interrupt and to run again:

1. **check** every table first: a row whose key exists on both sides with *different* values
   means both sides were written; picking a winner would lose data, so the move refuses before
   writing a single row and names the table and the key;
2. **copy** in one transaction on the target: it lands whole or not at all; a row already there
   with identical values is skipped, so a move interrupted anywhere can simply be run again;
3. **verify** by reading every source row back from the target;
4. only then **delete** the source rows (children first), by the keys that were verified.

Run it with the writers stopped (the monolith's server, the service): a row written to the source
meanwhile is reported as left behind (and the command keeps the old mode), but a child row added
to a moved parent would go with its parent's ``ON DELETE CASCADE``.

The publisher's ``<domain>_outbox`` table never moves: an event belongs to the database that wrote
it, and the monolith's feed cursor (``event_feed_cursors``) counts positions in that very table.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    MetaData,
    Row,
    Table,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError

from blog.config import ConfigError, load_config
from blog.events import Event, read_outbox
from blog.feed import cursor_metadata as feed_metadata
from blog.feed import cursors

DEFAULT_BATCH_SIZE = 500
MAX_REPORTED_CONFLICTS = 10

Key = tuple[Any, ...]


class MigrationError(Exception):
    """The move cannot go on; the message says which table and what to do."""


class MoveConflict(MigrationError):
    """Both databases hold a row with the same key and different values: nothing was written."""


class VerificationFailed(MigrationError):
    """The target does not hold every source row after the copy: nothing was deleted."""


@dataclass(frozen=True)
class TableMove:
    """What happened to one table: ``copied + already_there`` is every row the source had."""

    table: str
    copied: int
    already_there: int
    deleted: int
    target_rows: int
    left_behind: int = 0
    """Rows written to the source while the move ran: neither copied nor deleted."""


@dataclass(frozen=True)
class MoveReport:
    source: str
    target: str
    tables: tuple[TableMove, ...]
    not_moved: tuple[str, ...] = ()


@dataclass
class _Scan:
    source_rows: int = 0
    present: int = 0
    missing: int = 0
    conflicts: list[str] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)


# --------------------------------------------------------------------------- moving rows


def move_domain(
    metadata: MetaData,
    source: Engine,
    target: Engine,
    *,
    skip: Iterable[str] = (),
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> MoveReport:
    """Move every row of ``metadata``'s tables (but ``skip``) from ``source`` to ``target``."""
    if _url(source) == _url(target):
        raise MigrationError(
            f"source and target are the same database ({_url(source, hide=True)}): "
            "moving would delete the data it just kept"
        )
    skipped = set(skip)
    tables = [table for table in metadata.sorted_tables if table.name not in skipped]
    for table in tables:
        if not table.primary_key.columns:
            raise MigrationError(f"{table.name}: no primary key, so a re-run cannot be idempotent")
    tolerance = _time_tolerance(source, target)
    in_source = _existing(source, tables)

    # 1. check everything before writing anything
    in_target = _existing(target, tables)
    conflicts: list[str] = []
    with source.connect() as src, target.connect() as dst:
        for table in tables:
            if table.name in in_source and table.name in in_target:
                conflicts += _scan(src, dst, table, batch_size, tolerance).conflicts
    if conflicts:
        raise MoveConflict(_conflict_message(conflicts, target))

    # 2. copy, in one transaction on the target
    metadata.create_all(target, tables=tables)
    copied: dict[str, _Scan] = {}
    with source.connect() as src, target.begin() as dst:
        for table in tables:
            if table.name not in in_source:
                copied[table.name] = _Scan()
                continue
            try:
                scan = _scan(src, dst, table, batch_size, tolerance, copy_missing=True)
            except IntegrityError as exc:  # e.g. a unique email held by another id there
                raise MigrationError(
                    f"{table.name}: the target refused a copied row ({exc.orig}); "
                    "nothing was copied"
                ) from exc
            if scan.conflicts:  # written between the check and now: roll the whole copy back
                raise MoveConflict(_conflict_message(scan.conflicts, target))
            copied[table.name] = scan
        _reset_sequences(dst, tables)

    # 3. verify: every source row must now be in the target, with the same values
    verified: dict[str, _Scan] = {}
    target_rows: dict[str, int] = {}
    with source.connect() as src, target.connect() as dst:
        for table in tables:
            if table.name not in in_source:
                verified[table.name] = _Scan()
            else:
                scan = verified[table.name] = _scan(src, dst, table, batch_size, tolerance)
                if scan.missing or scan.conflicts or scan.present != scan.source_rows:
                    raise VerificationFailed(
                        f"{table.name}: after the copy the target holds {scan.present} of the "
                        f"{scan.source_rows} source rows ({scan.missing} missing, "
                        f"{len(scan.conflicts)} different); nothing was deleted"
                    )
            target_rows[table.name] = _count(dst, table)

    # 4. delete the source rows that were verified, children first; whatever is left was
    #    written meanwhile, and the caller must not call the domain moved
    deleted = dict.fromkeys((table.name for table in tables), 0)
    left = dict.fromkeys((table.name for table in tables), 0)
    with source.begin() as src:
        for table in reversed(tables):
            for chunk in _chunks(verified[table.name].keys, batch_size):
                deleted[table.name] += src.execute(
                    delete(table).where(_key_in(table, chunk))
                ).rowcount
        for table in tables:
            if table.name in in_source:
                left[table.name] = _count(src, table)

    return MoveReport(
        source=_url(source, hide=True),
        target=_url(target, hide=True),
        tables=tuple(
            TableMove(
                table=table.name,
                copied=copied[table.name].missing,
                already_there=copied[table.name].present,
                deleted=deleted[table.name],
                target_rows=target_rows[table.name],
                left_behind=left[table.name],
            )
            for table in tables
        ),
        not_moved=tuple(sorted(name for name in skipped if name in metadata.tables)),
    )


def _scan(
    src: Connection,
    dst: Connection,
    table: Table,
    batch_size: int,
    tolerance: timedelta,
    *,
    copy_missing: bool = False,
) -> _Scan:
    """Compare the source's rows with the target's, batch by batch (and insert the missing)."""
    result = _Scan()
    pk = list(table.primary_key.columns)
    for batch in _batches(src, table, batch_size):
        keys = [_key(row, pk) for row in batch]
        found = {
            _key(row, pk): row for row in dst.execute(select(table).where(_key_in(table, keys)))
        }
        missing: list[dict[str, Any]] = []
        for key, row in zip(keys, batch, strict=True):
            there = found.get(key)
            if there is None:
                missing.append({c.key: _for_insert(c, row._mapping[c]) for c in table.columns})
                continue
            differs = [
                c.name
                for c in table.columns
                if not _same(row._mapping[c], there._mapping[c], tolerance)
            ]
            if differs:
                result.conflicts.append(
                    f"{table.name} {_describe_key(pk, key)}: differs in {', '.join(differs)}"
                )
            else:
                result.present += 1
        result.source_rows += len(batch)
        result.missing += len(missing)
        result.keys += keys
        if copy_missing and missing:
            dst.execute(insert(table), missing)
    return result


def _batches(conn: Connection, table: Table, batch_size: int) -> Iterator[Sequence[Row[Any]]]:
    """Keyset pagination in primary-key order: stable, and no OFFSET rescans on big tables."""
    pk = list(table.primary_key.columns)
    query = select(table).order_by(*pk).limit(batch_size)
    last: Key | None = None
    while True:
        page = query if last is None else query.where(_after(pk, last))
        rows = conn.execute(page).all()
        if rows:
            yield rows
        if len(rows) < batch_size:
            return
        last = _key(rows[-1], pk)


def _key(row: Row[Any], pk: Sequence[Any]) -> Key:
    return tuple(row._mapping[column] for column in pk)


def _after(pk: Sequence[Any], last: Key) -> ColumnElement[bool]:
    if len(pk) == 1:
        return cast(ColumnElement[bool], pk[0] > last[0])
    return tuple_(*pk) > tuple_(*last)


def _key_in(table: Table, keys: Sequence[Key]) -> ColumnElement[bool]:
    pk = list(table.primary_key.columns)
    if len(pk) == 1:
        return pk[0].in_([key[0] for key in keys])
    return tuple_(*pk).in_(keys)


def _describe_key(pk: Sequence[Any], key: Key) -> str:
    return ", ".join(f"{column.name}={value!r}" for column, value in zip(pk, key, strict=True))


def _chunks(items: Sequence[Key], size: int) -> Iterator[Sequence[Key]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _count(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _existing(engine: Engine, tables: Sequence[Table]) -> set[str]:
    inspector = inspect(engine)
    return {table.name for table in tables if inspector.has_table(table.name)}


def _url(engine: Engine, *, hide: bool = False) -> str:
    return engine.url.render_as_string(hide_password=hide)


def _is_mysql(engine: Engine) -> bool:
    return engine.dialect.name in ("mysql", "mariadb")


def _time_tolerance(source: Engine, target: Engine) -> timedelta:
    """MySQL/MariaDB ``DATETIME`` keeps whole seconds (truncated or rounded): a row read back
    from there is still the same row when its timestamps differ by less than a second."""
    return timedelta(seconds=1) if _is_mysql(source) or _is_mysql(target) else timedelta(0)


def _utc(moment: datetime) -> datetime:
    """Naive datetimes in this project are UTC (SQLite and MySQL hand them back naive)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _for_insert(column: Column[Any], value: Any) -> Any:
    """Timestamps travel as explicit UTC: PostgreSQL would read a naive one in its session's
    time zone, and SQLite drops the offset of an aware one without converting it."""
    if isinstance(value, datetime):
        moment = _utc(value)
        timezone = isinstance(column.type, DateTime) and column.type.timezone
        return moment if timezone else moment.replace(tzinfo=None)
    if isinstance(value, memoryview):
        return value.tobytes()
    return value


def _same(a: Any, b: Any, tolerance: timedelta) -> bool:
    if isinstance(a, datetime) and isinstance(b, datetime):
        return abs(_utc(a) - _utc(b)) <= tolerance
    if isinstance(a, memoryview):
        a = a.tobytes()
    if isinstance(b, memoryview):
        b = b.tobytes()
    return bool(a == b)


def _conflict_message(conflicts: Sequence[str], target: Engine) -> str:
    shown = "\n  ".join(conflicts[:MAX_REPORTED_CONFLICTS])
    more = len(conflicts) - MAX_REPORTED_CONFLICTS
    tail = f"\n  ... and {more} more" if more > 0 else ""
    return (
        f"refused: {len(conflicts)} row(s) exist in both databases with different values, so "
        f"both were written and neither copy can win; nothing was changed.\n  {shown}{tail}\n"
        f"Resolve them in {_url(target, hide=True)} (or in the source), then run again."
    )


def _reset_sequences(conn: Connection, tables: Sequence[Table]) -> None:
    """PostgreSQL hands out serial ids from a sequence that explicit inserts do not advance: left
    alone, the service's next insert would get id 1 and collide with a copied row. (MySQL,
    MariaDB and SQLite continue after the largest id by themselves.)"""
    if conn.dialect.name != "postgresql":
        return
    preparer = conn.dialect.identifier_preparer
    for table in tables:
        column = table.autoincrement_column
        if column is None:
            continue
        # Identifiers cannot be bound parameters; these come from our own metadata, quoted.
        quoted_table, quoted_column = preparer.format_table(table), preparer.quote(column.name)
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence(:table, :column), "
                f"COALESCE(MAX({quoted_column}), 1), MAX({quoted_column}) IS NOT NULL) "
                f"FROM {quoted_table}"
            ),
            {"table": quoted_table, "column": column.name},
        )


# --------------------------------------------------------------------------- the event feed


def feed_position(engine: Engine, source: str) -> int:
    """How far the monolith has read ``source``'s feed (0: nothing yet)."""
    feed_metadata.create_all(engine)
    with engine.connect() as conn:
        found = conn.execute(select(cursors.c.position).where(cursors.c.source == source))
        return int(found.scalar() or 0)


def set_feed_position(engine: Engine, source: str, position: int) -> None:
    feed_metadata.create_all(engine)
    with engine.begin() as conn:
        changed = conn.execute(
            update(cursors).where(cursors.c.source == source).values(position=position)
        ).rowcount
        if not changed:
            conn.execute(insert(cursors).values(source=source, position=position))


def outbox_end(engine: Engine, outbox: Table) -> int:
    """The last position written to ``outbox`` (0 when it is empty or not there yet)."""
    if not inspect(engine).has_table(outbox.name):
        return 0
    with engine.connect() as conn:
        return int(conn.execute(select(func.max(outbox.c.id))).scalar() or 0)


def deliver_pending(
    service: Engine,
    outbox: Table,
    monolith: Engine,
    source: str,
    deliver: Callable[[Event], None],
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> int:
    """Hand the service's outbox rows the monolith has not pulled yet to ``deliver``.

    What the feed puller would have done had it run: events after the monolith's cursor, oldest
    first, the cursor moving on after each batch (never back: a puller still running elsewhere
    may be ahead). Consumers are idempotent by event id, so a redelivery is harmless.
    """
    if not inspect(service).has_table(outbox.name):
        return 0
    delivered = 0
    position = feed_position(monolith, source)
    while batch := read_outbox(service, outbox, position, batch_size):
        for _position, event in batch:
            deliver(event)
        position = batch[-1][0]
        if position > feed_position(monolith, source):
            set_feed_position(monolith, source, position)
        delivered += len(batch)
    return delivered


# --------------------------------------------------------------------------- config.yaml


def _yaml() -> YAML:
    yaml = YAML()  # round-trip: comments, key order and quoting survive
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long value
    # Round-trip mode writes None as an empty value; keep the file's explicit `null`.
    yaml.representer.add_representer(
        type(None), lambda rep, _data: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return yaml


def _load_for_edit(path: Path) -> tuple[YAML, CommentedMap]:
    if not path.is_file():
        raise ConfigError(
            f"{path}: no config file to record the mode in (BLOG_CONFIG or config.yaml)"
        )
    yaml = _yaml()
    data = yaml.load(path.read_text(encoding="utf-8"))
    if data is None:
        data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    return yaml, data


def check_config_editable(path: str | os.PathLike[str]) -> None:
    """Fail now, before any row moves, if the mode could not be written afterwards."""
    file = Path(path)
    _load_for_edit(file)
    if not os.access(file, os.W_OK) or not os.access(file.parent, os.W_OK):
        raise ConfigError(f"{file}: not writable, so the new mode could not be recorded")


def set_service_mode(path: str | os.PathLike[str], domain: str, mode: str) -> None:
    """Set ``services.<domain>.mode`` in the file, keeping every comment and the layout.

    The new file is validated with the real loader and replaces the old one atomically; if it
    would not load, the old file stays as it was.
    """
    file = Path(path)
    yaml, data = _load_for_edit(file)
    services = data.get("services")
    if not isinstance(services, CommentedMap):
        services = data["services"] = CommentedMap()
    section = services.get(domain)
    if not isinstance(section, CommentedMap):
        section = services[domain] = CommentedMap()
    section["mode"] = mode
    buffer = io.StringIO()
    yaml.dump(data, buffer)

    fd, temp_name = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(buffer.getvalue())
        load_config(temp)  # raises ConfigError if the edit broke the file
        if file.exists():
            temp.chmod(file.stat().st_mode & 0o7777)
        temp.replace(file)
    finally:
        temp.unlink(missing_ok=True)
