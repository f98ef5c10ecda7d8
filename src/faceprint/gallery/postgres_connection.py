"""One PostgreSQL + pgvector gallery database: connection, schema and transactions.

Why a module of its own: reaching a server that may be down or restarted, creating and
versioning the schema, and serialising writers are the same for every query the store
runs (:class:`~.postgres.PostgresStore`, built on :class:`PgConnection`), and none of it
is about what the queries read or write.

**Schema** (version :data:`SCHEMA_VERSION`, created on first open in schema ``faceprint``):
``meta`` (one row: schema version, bound model id ``network@version+<sha8>`` -- ids an older
faceprint stored are upgraded on open, once, in one transaction -- dim, ``generation``),
``settings``, ``people`` (unique name, unique ``uid`` -- the person's stable opaque id,
:attr:`~.records.Person.id` --, jsonb metadata) and ``faces`` (``vector`` column, box,
score, sha256, ``ON DELETE CASCADE`` to its person, ``UNIQUE (person_id, image_sha256)``). The
dimension is unknown until the first enrolment binds the model (:meth:`PgConnection._bind`);
that transaction types the column ``vector(dim)`` and builds the HNSW index
(``vector_cosine_ops``) when the dimension allows (:data:`HNSW_MAX_DIM`). The schema needs
the pgvector extension, which :meth:`PgConnection._ensure_schema` creates on first open when
the user may, and otherwise names the statement an administrator must run. Version 1 had
no ``people.uid``: a version-1 gallery is upgraded on open, once, in one transaction under
the schema's advisory lock (:meth:`PgConnection._migrate_schema`: the column added, a
fresh uuid4 hex for every person, unique, the version bumped), which needs the rights of
the tables' owner.

**Transactions and concurrency.** Every write is one transaction that first locks the ``meta``
row (``SELECT ... FOR UPDATE``) and bumps ``generation`` in it (:meth:`PgConnection._write`),
so concurrent writers from any number of processes are serialised, nothing is lost, and a
crash leaves the gallery as it was before the call or after it. :meth:`PgConnection.transaction`
pins the connection so that several calls share one transaction (nested writes are savepoints).
A removed person's rows are deleted in one transaction; what the server keeps of them on disk
until ``VACUUM`` is the administrator's (README).

**Connection failures.** One connection per store, opened on demand with a connect timeout of
:data:`CONNECT_TIMEOUT_S`. A failure to connect, or a server that goes away mid-operation, raises
:class:`~faceprint.errors.GalleryError` ("cannot reach PostgreSQL at ...") and drops the
connection; the next call connects again. A connection is checked first (``SELECT 1``) when it
has been idle for more than :data:`PING_AFTER_S`, or when the server has written to it while it
was idle (a server that shuts down says so to every session, "terminating connection due to
administrator command", before it closes them; a zero-timeout ``select`` on the socket sees it
without a round trip). So a server restarted between two calls costs no error, however soon the
second call comes. Error messages show the URL with its password masked.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ..config import mask_url
from ..errors import GalleryError, GalleryUnavailableError, MissingExtraError
from .records import pause_before_commit, upgrade_calibration, upgrade_model_id

if TYPE_CHECKING:
    import psycopg

SCHEMA_VERSION = 2
CONNECT_TIMEOUT_S = 5
PING_AFTER_S = 1.0
#: pgvector's HNSW index handles at most 2,000 dimensions; beyond that the search is exact.
HNSW_MAX_DIM = 2000

_INSTALL = "pip install 'faceprint[postgres]'"
_SCHEMA_DDL = """
CREATE SCHEMA IF NOT EXISTS faceprint;
CREATE TABLE IF NOT EXISTS faceprint.meta (
    id integer PRIMARY KEY CHECK (id = 1),
    schema_version integer NOT NULL,
    model text,
    dim integer,
    generation bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS faceprint.settings (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS faceprint.people (
    id bigserial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at text NOT NULL,
    uid text NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS faceprint.faces (
    seq bigserial PRIMARY KEY,
    face_id text NOT NULL UNIQUE,
    person_id bigint NOT NULL REFERENCES faceprint.people (id) ON DELETE CASCADE,
    vector vector NOT NULL,
    model text NOT NULL,
    image_sha256 text,
    x1 double precision, y1 double precision, x2 double precision, y2 double precision,
    score double precision,
    added_at text NOT NULL,
    UNIQUE (person_id, image_sha256)
);
CREATE INDEX IF NOT EXISTS faces_person ON faceprint.faces (person_id);
"""

T = TypeVar("T")


def _import_psycopg() -> Any:
    try:
        import pgvector.psycopg
        import psycopg
    except ImportError as exc:
        raise MissingExtraError(
            f"the PostgreSQL gallery needs psycopg and pgvector ({exc.name} is missing): run {_INSTALL}"
        ) from exc
    return psycopg, pgvector.psycopg


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PgConnection:
    """The gallery database at ``url``, connected (and its schema created) on construction;
    see the module docstring."""

    def __init__(self, url: str) -> None:
        self._psycopg, self._pgvector = _import_psycopg()
        self._url = url
        self.location = mask_url(url)
        self._conn: psycopg.Connection[Any] | None = None
        self._last_used = 0.0
        self._lock = threading.RLock()  # one connection: one transaction at a time across threads
        self._pinned: psycopg.Connection[Any] | None = None  # inside transaction()
        self._run("open the gallery", lambda conn: None)  # connects and creates the schema

    # ----------------------------------------------------------------- connection handling
    def _scrub(self, text: str) -> str:
        """``text`` without the URL's password, should libpq ever echo it."""
        try:
            password = self._psycopg.conninfo.conninfo_to_dict(self._url).get("password")
        except self._psycopg.Error:
            return mask_url(text)
        return mask_url(text.replace(str(password), "***") if password else text)

    def _connect(self) -> psycopg.Connection[Any]:
        pg = self._psycopg
        try:
            conn: psycopg.Connection[Any] = pg.connect(
                self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
            )
        except pg.Error as exc:
            raise GalleryUnavailableError(
                f"cannot reach PostgreSQL at {self.location}: {self._scrub(_first_line(exc))}"
            ) from None
        try:
            self._ensure_schema(conn)
            self._pgvector.register_vector(conn)
        except pg.Error as exc:
            conn.close()
            raise GalleryError(
                f"cannot open the gallery schema at {self.location}: {self._scrub(_first_line(exc))}"
            ) from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        """Create the extension and tables once; refuse a schema from a newer faceprint.

        The DDL runs only while ``faceprint.meta`` is missing, so a user with read/write rights
        on an existing gallery needs no CREATE privilege; an advisory lock serialises processes
        that open a new gallery at the same moment."""
        exists = conn.execute("SELECT to_regclass('faceprint.meta') IS NOT NULL").fetchone()
        if not (exists and exists[0]):
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('faceprint.schema'))")
                if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() is None:
                    try:
                        with conn.transaction():
                            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                    except self._psycopg.Error as exc:
                        raise GalleryError(
                            f"the pgvector extension is not installed in the database at {self.location} "
                            f"and could not be created ({_first_line(exc)}): ask an administrator to run "
                            "'CREATE EXTENSION vector;' in that database"
                        ) from None
                conn.execute(_SCHEMA_DDL)
                conn.execute(
                    "INSERT INTO faceprint.meta (id, schema_version) VALUES (1, %s) ON CONFLICT DO NOTHING",
                    (SCHEMA_VERSION,),
                )
        row = conn.execute("SELECT schema_version FROM faceprint.meta WHERE id = 1").fetchone()
        found = int(row[0]) if row else SCHEMA_VERSION
        if found > SCHEMA_VERSION:
            raise GalleryError(
                f"the gallery at {self.location} has schema version {found}, newer than this faceprint "
                f"supports ({SCHEMA_VERSION}): upgrade faceprint"
            )
        if found < SCHEMA_VERSION:
            self._migrate_schema(conn, found)
        self._migrate_model_ids(conn)

    def _migrate_schema(self, conn: psycopg.Connection[Any], found: int) -> None:
        """Upgrade a version-1 gallery in place, in ONE transaction under the schema's
        advisory lock (and the meta row lock, so no write interleaves): add
        ``people.uid``, fill every row with a fresh uuid4 hex (the server's
        ``gen_random_uuid``), make it NOT NULL and UNIQUE, bump the version. Another
        process that upgraded it meanwhile leaves nothing to do."""
        if found != 1:
            raise GalleryError(
                f"the gallery at {self.location} has schema version {found}, which this faceprint "
                f"cannot upgrade to {SCHEMA_VERSION} (written by an unknown tool)"
            )
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('faceprint.schema'))")
                row = conn.execute(
                    "SELECT schema_version FROM faceprint.meta WHERE id = 1 FOR UPDATE"
                ).fetchone()
                if row is None or int(row[0]) != 1:
                    return
                conn.execute("ALTER TABLE faceprint.people ADD COLUMN uid text")
                conn.execute("UPDATE faceprint.people SET uid = replace(gen_random_uuid()::text, '-', '')")
                conn.execute("ALTER TABLE faceprint.people ALTER COLUMN uid SET NOT NULL")
                conn.execute("ALTER TABLE faceprint.people ADD CONSTRAINT people_uid_key UNIQUE (uid)")
                conn.execute("UPDATE faceprint.meta SET schema_version = %s WHERE id = 1", (SCHEMA_VERSION,))
        except self._psycopg.Error as exc:
            owner = getattr(exc, "sqlstate", None) == "42501"  # insufficient_privilege
            hint = ": open it once as the owner of the faceprint tables" if owner else ""
            raise GalleryError(
                f"cannot upgrade the gallery at {self.location} from schema version 1 to {SCHEMA_VERSION} "
                f"({self._scrub(_first_line(exc))}); nothing was changed{hint}"
            ) from None

    def _migrate_model_ids(self, conn: psycopg.Connection[Any]) -> None:
        """Rewrite the model ids an older faceprint stored (``name@version``) in their current
        form (:func:`~.records.upgrade_model_id`): the bound model, every face's, and the
        calibration record's, once, in one transaction holding the meta row lock."""
        row = conn.execute("SELECT model FROM faceprint.meta WHERE id = 1").fetchone()
        if row is None or row[0] is None or upgrade_model_id(str(row[0])) is None:
            return
        with conn.transaction():
            row = conn.execute("SELECT model FROM faceprint.meta WHERE id = 1 FOR UPDATE").fetchone()
            new = upgrade_model_id(str(row[0])) if row and row[0] is not None else None
            if new is None:  # another process migrated it meanwhile
                return
            conn.execute("UPDATE faceprint.meta SET model = %s WHERE id = 1", (new,))
            for (old,) in conn.execute("SELECT DISTINCT model FROM faceprint.faces").fetchall():
                up = upgrade_model_id(str(old))
                if up is not None:
                    conn.execute("UPDATE faceprint.faces SET model = %s WHERE model = %s", (up, old))
            cal = conn.execute("SELECT value FROM faceprint.settings WHERE key = 'calibration'").fetchone()
            cal_new = upgrade_calibration(str(cal[0])) if cal else None
            if cal_new is not None:
                conn.execute("UPDATE faceprint.settings SET value = %s WHERE key = 'calibration'", (cal_new,))

    def _live(self) -> psycopg.Connection[Any]:
        """The open connection, (re)connecting when it is missing, closed or found dead;
        inside :meth:`transaction`, its connection whatever its state (a new connection
        would be outside the transaction)."""
        if self._pinned is not None:
            return self._pinned
        conn = self._conn
        if conn is not None and not conn.closed and self._stale(conn):
            try:
                conn.execute("SELECT 1")
            except self._psycopg.Error:
                conn.close()
        if conn is None or conn.closed:
            self._conn = conn = self._connect()
        return conn

    def _stale(self, conn: psycopg.Connection[Any]) -> bool:
        """Whether the idle ``conn`` must be pinged before use (module doc): idle for longer
        than :data:`PING_AFTER_S`, or readable (an idle session receives nothing unless the
        server is ending it, or has closed it)."""
        if time.monotonic() - self._last_used > PING_AFTER_S:
            return True
        try:
            readable, _, _ = select.select([conn.fileno()], [], [], 0)
        except (OSError, ValueError, self._psycopg.Error):
            return True
        return bool(readable)

    def _run(self, what: str, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``fn`` on a live connection, turning every database failure into GalleryError."""
        with self._lock:
            return self._run_locked(what, fn)

    def _run_locked(self, what: str, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        conn = self._live()
        try:
            return fn(conn)
        except self._psycopg.Error as exc:
            if conn.closed or conn.broken:
                self._conn = None
                conn.close()
                raise GalleryUnavailableError(
                    f"cannot reach PostgreSQL at {self.location}: lost the connection while trying to "
                    f"{what}: {self._scrub(_first_line(exc))} (the server rolls back an unfinished "
                    "write; retry once it is back)"
                ) from None
            raise GalleryError(
                f"PostgreSQL gallery at {self.location}: cannot {what}: {self._scrub(_first_line(exc))}"
            ) from None
        finally:
            self._last_used = time.monotonic()

    @contextmanager
    def transaction(self, readonly: bool = False) -> Iterator[None]:
        """Every store call inside the block runs in one transaction on one connection (see
        :meth:`~.records.Store.transaction`): a write one holds the ``meta`` row lock from
        the start; ``readonly`` is REPEATABLE READ READ ONLY (one snapshot, no lock). A
        nested call joins the open transaction."""
        with self._lock:
            if self._pinned is not None:
                yield
                return
            conn = self._run("start a transaction", lambda c: c)
            self._pinned = conn
            try:
                with conn.transaction():
                    if readonly:
                        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    else:
                        conn.execute("SELECT 1 FROM faceprint.meta WHERE id = 1 FOR UPDATE")
                    yield
                    if not readonly:
                        conn.execute("UPDATE faceprint.meta SET generation = generation + 1 WHERE id = 1")
                        pause_before_commit(conn, "faceprint.faces")
            except self._psycopg.Error as exc:
                lost = conn.closed or conn.broken
                if lost:
                    self._conn = None
                raise (GalleryUnavailableError if lost else GalleryError)(
                    f"PostgreSQL gallery at {self.location}: the transaction failed and was rolled back: "
                    f"{self._scrub(_first_line(exc))}"
                ) from None
            finally:
                self._pinned = None

    @contextmanager
    def _write(self, conn: psycopg.Connection[Any]) -> Iterator[tuple[str | None, int | None]]:
        """A write transaction holding the meta row lock; bumps ``generation`` on success.
        Inside :meth:`transaction`, a savepoint of it (the outer one bumps ``generation``)."""
        with conn.transaction():
            row = conn.execute("SELECT model, dim FROM faceprint.meta WHERE id = 1 FOR UPDATE").fetchone()
            yield (row[0], row[1]) if row else (None, None)
            if self._pinned is None:
                conn.execute("UPDATE faceprint.meta SET generation = generation + 1 WHERE id = 1")
                pause_before_commit(conn, "faceprint.faces")

    def _writing(self, what: str, body: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``body`` inside one locked write transaction (see :meth:`_write`)."""

        def tx(conn: psycopg.Connection[Any]) -> T:
            with self._write(conn):
                return body(conn)

        return self._run(what, tx)

    def _bind(self, conn: psycopg.Connection[Any], model: str, dim: int) -> None:
        """Bind the gallery to ``model``: type the vector column and build the HNSW index."""
        conn.execute(f"ALTER TABLE faceprint.faces ALTER COLUMN vector TYPE vector({int(dim)})")
        if dim <= HNSW_MAX_DIM:
            conn.execute(
                "CREATE INDEX IF NOT EXISTS faces_hnsw ON faceprint.faces "
                "USING hnsw (vector vector_cosine_ops)"
            )
        conn.execute("UPDATE faceprint.meta SET model = %s, dim = %s WHERE id = 1", (model, dim))

    def _rows(self, what: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of one read-only query."""
        return self._run(what, lambda conn: conn.execute(sql, params).fetchall())

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
