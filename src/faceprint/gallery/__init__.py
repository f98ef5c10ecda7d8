"""Galleries of enrolled people: enrolment, 1:N identification, lookalike search.

``open_gallery(location)`` picks the backend: a ``postgresql://`` (or ``postgres://``) URL
opens a PostgreSQL + pgvector store (extra ``[postgres]``), anything else is the path of
an SQLite file. ``None`` means ``FACEPRINT_GALLERY`` when set, else
``$FACEPRINT_HOME/gallery.sqlite`` (see :func:`default_location`).

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
    """``FACEPRINT_GALLERY``, else ``gallery.sqlite`` in ``FACEPRINT_HOME``."""
    s = get_settings()
    return s.gallery or str(s.home / "gallery.sqlite")


def is_postgres_url(location: str | Path) -> bool:
    return isinstance(location, str) and location.lower().startswith(_PG_PREFIXES)


def open_store(location: str | Path | None = None) -> Store:
    """The store at ``location`` (a PostgreSQL URL or an SQLite path; ``None``: default)."""
    where = location if location is not None else default_location()
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
