"""Galleries of enrolled people: enrolment, 1:N identification, lookalike search.

``open_gallery(location)`` picks the backend: a ``postgresql://`` (or ``postgres://``) URL
opens a PostgreSQL + pgvector store (extra ``[postgres]``), anything else is the path of
an SQLite file. ``None`` means ``FACEPRINT_GALLERY`` when set, else ``gallery.sqlite`` in
the user data directory (see :func:`default_location`); a default gallery that an older
faceprint left in the cache directory is moved there on first use (:mod:`.legacy`).

Nothing heavy is imported here: the recognizer and the backends load on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..config import get_settings
from ..errors import MissingExtraError

if TYPE_CHECKING:
    from ..recognizer import Recognizer
    from .gallery import Gallery
    from .records import Store

__all__ = ["default_location", "is_postgres_url", "open_gallery", "open_store"]

_PG_PREFIXES = ("postgresql://", "postgres://")


def default_location() -> str:
    """``FACEPRINT_GALLERY``, else ``gallery.sqlite`` in the user data directory
    (``$XDG_DATA_HOME/faceprint``; ``$FACEPRINT_HOME`` when that is set): see
    :class:`~faceprint.config.Settings`."""
    s = get_settings()
    return s.gallery or str(s.default_gallery)


def is_postgres_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.lower().startswith(_PG_PREFIXES)


def open_store(location: str | Path | None = None) -> Store:
    """The store at ``location`` (a PostgreSQL URL or an SQLite path; ``None``: default)."""
    where = location if location is not None else default_location()
    s, legacy = get_settings(), get_settings().legacy_gallery
    if location is None and s.gallery is None and legacy is not None and legacy != s.default_gallery:
        from .legacy import move_legacy_gallery

        where = str(move_legacy_gallery(legacy, s.default_gallery))
    if is_postgres_url(where):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:  # psycopg or pgvector missing
            if isinstance(exc, MissingExtraError):
                raise
            raise MissingExtraError(
                f"a PostgreSQL gallery needs psycopg and pgvector ({exc.name or exc} is missing): "
                "run pip install 'faceprint[postgres]'"
            ) from None
        return PostgresStore(str(where))
    from .sqlite import SqliteStore

    return SqliteStore(Path(where))


def open_gallery(location: str | Path | None = None, recognizer: Recognizer | None = None) -> Gallery:
    """A :class:`~.gallery.Gallery` on the store at ``location`` (see the module doc)."""
    from .gallery import Gallery

    return Gallery(open_store(location), recognizer)
