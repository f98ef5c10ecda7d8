"""The files that cache an ANN index's graph, and when they can be trusted.

Why: building the HNSW graph of a large gallery takes minutes, so it is kept next to the
store; but the store (SQLite/PostgreSQL) is the source of truth, and these files are only a
*cache*: a missing, unreadable, corrupt or mismatched file, or one built with other graph
parameters, is rebuilt from the snapshot with a log message, never an error, and losing
or deleting them never loses data.

Files, when an index has a ``path`` (all three written with
:func:`~faceprint.files.atomic_write`, owner-only (0600) like the gallery file: the graph
holds the face vectors):

* ``<path>`` -- the usearch graph of the base (:class:`~.hnsw.Graph`);
* ``<path>.ids.npy`` -- the base's face ids in key order (UTF-8, numpy ``S`` array, read
  with ``allow_pickle=False``), so another process can map keys to face ids;
* ``<path>.json`` -- the sidecar, written *last*: format version, dimension, storage dtype,
  graph parameters, the base's generation and count, and the size and sha256 of the two
  files above. The files are trusted only when both checksums match, so a crash between
  the writes (new graph or ids, old sidecar) reads as a mismatch. The ids are checked
  (cheap) before the graph's checksum, so a base too far behind is rebuilt without
  hashing the graph.

Deleting a person must leave no vector of theirs in any file, and the graph keeps removed
faces (tombstones) until it is rebuilt: :func:`drop_if_holds` deletes the cache files when
they hold a removed face, and the next search rebuilds them from the store.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..files import atomic_write
from .hnsw import Graph, KeyMapping

log = logging.getLogger(__name__)

#: Format of the sidecar; files of another version are rebuilt. 2: incremental base
#: (``<path>.ids.npy`` and its checksum).
SIDECAR_VERSION = 2


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def ids_path(path: Path) -> Path:
    return path.with_name(path.name + ".ids.npy")


def fixed_meta(dim: int | None, params: dict[str, Any]) -> dict[str, Any]:
    """Sidecar fields a file must share with an index (``dim``, graph ``params``) to be
    used at all."""
    return {
        "version": SIDECAR_VERSION,
        "dim": dim or 0,
        "dtype": params["dtype"],
        "connectivity": params["connectivity"],
        "expansion_add": params["expansion_add"],
    }


def _file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _check_file(path: Path, meta: dict[str, Any], size_key: str, sha_key: str) -> None:
    if meta.get(size_key) != path.stat().st_size or meta.get(sha_key) != _file_sha256(path):
        raise ValueError(f"{path.name} does not match the checksum recorded in its sidecar")


def _encode_ids(face_ids: tuple[str, ...]) -> NDArray[np.bytes_] | None:
    """The face ids as a numpy ``S`` array of UTF-8, or ``None`` when that would not give
    them back unchanged (``S`` drops trailing NULs; lone surrogates do not encode).

    UTF-8 bytes rather than numpy's ``U`` (4 bytes a character): 32 MB instead of 128 MB
    for 1M uuid4-hex ids.
    """
    try:
        encoded = [f.encode() for f in face_ids]
    except UnicodeEncodeError:
        return None
    arr: NDArray[np.bytes_] = np.array(encoded, dtype=np.bytes_) if encoded else np.zeros(0, "S1")
    return arr if arr.tolist() == encoded else None


def _decode_ids(arr: Any, count: int) -> tuple[str, ...]:
    if not isinstance(arr, np.ndarray) or arr.dtype.kind != "S" or arr.shape != (count,):
        raise ValueError(f"ids file does not hold {count} face ids")
    return tuple(b.decode() for b in arr.tolist())


def load_graph(
    path: Path, fixed: dict[str, Any], index_cls: Any, face_ids: tuple[str, ...], dim: int | None
) -> tuple[Graph, KeyMapping] | None:
    """The graph cached at ``path`` and where its faces are in a snapshot of ``face_ids``,
    if the files are intact, match ``fixed`` (:func:`fixed_meta`) and are not too far
    behind (:meth:`~.hnsw.KeyMapping.rebuild_reason`); else ``None``, with a log message."""
    if not path.exists():
        log.info("ANN index %s missing: building it from the gallery", path)
        return None
    try:
        meta = json.loads(sidecar_path(path).read_text())
        if not isinstance(meta, dict):
            raise ValueError("sidecar is not a JSON object")
        stale = {k: (meta.get(k), v) for k, v in fixed.items() if meta.get(k) != v}
        if stale:
            log.info("ANN index %s was built differently (%s): rebuilding it", path, stale)
            return None
        count = meta["count"]
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"sidecar records a count of {count!r}")
        # Checksums before parsing: a damaged graph can load "fine" and answer wrong rows
        # (or worse). The ids file first: it is small and says whether the graph is
        # worth hashing (sha256 runs at ~1.8 GB/s here: ~0.4 s for a 1M-face graph).
        ids_file = ids_path(path)
        _check_file(ids_file, meta, "ids_bytes", "ids_sha256")
        with ids_file.open("rb") as f:
            ids = _decode_ids(np.load(f, allow_pickle=False), count)
        graph_gen = meta.get("generation")
        graph = Graph(None, ids, graph_gen if isinstance(graph_gen, int) else -1)
        mapping = graph.map(face_ids)
        reason = mapping.rebuild_reason()
        if reason is not None:
            log.info("ANN index %s is too far behind the gallery (%s): rebuilding it", path, reason)
            return None
        _check_file(path, meta, "bytes", "sha256")
        graph.index = index_cls.restore(str(path))
        if graph.index is None or len(graph.index) != count or graph.index.ndim != dim:
            raise ValueError("not a usearch index of the recorded size and dimension")
        return graph, mapping
    except (OSError, EOFError, ValueError, RuntimeError, TypeError, AttributeError, KeyError) as exc:
        log.warning("ANN index %s is unreadable (%s): rebuilding it from the gallery", path, exc)
        return None


def save_graph(path: Path, fixed: dict[str, Any], graph: Graph) -> None:
    """Write graph, ids, then the sidecar that vouches for both, each atomically. A crash
    before the sidecar leaves checksums that do not match the new files: rebuilt. A cache
    that cannot be written is logged, not raised: search still works."""
    ids_file = ids_path(path)
    ids = _encode_ids(graph.ids)
    if ids is None:
        log.warning("ANN index not saved to %s: face ids that UTF-8/numpy cannot round-trip", path)
        return

    def write_ids(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a file object: np.save would append ".npy" to a name
            np.save(f, ids, allow_pickle=False)

    try:
        atomic_write(path, lambda tmp: graph.index.save(str(tmp)))
        atomic_write(ids_file, write_ids)
        meta = {
            **fixed,
            "generation": graph.generation,
            "count": len(graph.ids),
            "bytes": path.stat().st_size,
            "sha256": _file_sha256(path),
            "ids_bytes": ids_file.stat().st_size,
            "ids_sha256": _file_sha256(ids_file),
        }
        atomic_write(sidecar_path(path), lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))
    except OSError as exc:  # a cache we cannot write is not an error: search still works
        log.warning("could not save ANN index to %s (%s): it will be rebuilt next time", path, exc)


def _leftovers(path: Path) -> list[Path]:
    """Temporary files of the cache's writes (:func:`~faceprint.files.atomic_write`) that a
    killed process left behind, or that another process is writing now: they may hold
    vectors too."""
    if not path.parent.is_dir():
        return []
    names = (path.name, ids_path(path).name, sidecar_path(path).name)
    return [p for n in names for p in path.parent.glob(f".{n}.*.tmp")]


def cache_files(path: Path) -> list[Path]:
    """Every file of the cache at ``path`` that exists, temporary ones included."""
    return [p for p in (path, ids_path(path), sidecar_path(path)) if p.exists()] + _leftovers(path)


def drop_if_holds(path: Path, face_ids: set[str]) -> bool:
    """Delete the cache at ``path`` when it holds any of ``face_ids`` (or when that cannot
    be told: ids file missing or unreadable), and any temporary file of it in every case;
    returns whether the cache was deleted. A cache is never the truth, so deleting it
    loses nothing: the next search rebuilds it from the store."""
    doomed = _leftovers(path)
    files = [p for p in (path, ids_path(path), sidecar_path(path)) if p.exists()]
    dropped = False
    if files and face_ids:
        try:
            with ids_path(path).open("rb") as f:
                arr = np.load(f, allow_pickle=False)
            held = {b.decode() for b in arr.tolist()} if arr.dtype.kind == "S" else None
        except (OSError, ValueError, EOFError, AttributeError, UnicodeDecodeError):
            held = None
        if held is None or not held.isdisjoint(face_ids):
            doomed += files
            dropped = True
    for p in doomed:
        try:
            p.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not delete ANN index file %s (%s): it may hold removed faces", p, exc)
    if dropped:
        log.info("ANN index %s held removed faces: deleted; the next search rebuilds it", path)
    return dropped
