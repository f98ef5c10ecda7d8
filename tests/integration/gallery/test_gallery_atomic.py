"""Writes that must be atomic, on every backend (no model needed: synthetic vectors).

* a threshold with its calibration is one transaction: a failure half-way keeps the old
  pair, never a threshold with another one's calibration record;
* ``import`` checks the whole file first, then writes in one transaction: a bad line N,
  or a failure half-way through the writes, imports nothing;
* ``export`` reads one snapshot (a concurrent writer is in the file whole or not at all)
  and refuses to overwrite a file unless ``force`` (``--force`` on the command line).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceprint.errors import GalleryError
from faceprint.gallery.gallery import Gallery
from faceprint.gallery.records import FaceRecord, Store

from .conftest import StoreFactory

RNG = np.random.default_rng(11)


def faces(person: str, n: int, dim: int = 8) -> list[FaceRecord]:
    v = RNG.standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return [FaceRecord(uuid.uuid4().hex, person, v[i], "m@1", uuid.uuid4().hex) for i in range(n)]


def second_handle(store: Store) -> Store:
    """Another connection to the same gallery, as another process would have. SQLite: a
    short busy timeout, since its removals wait that long for the reader to let their WAL
    be truncated (and then warn)."""
    from faceprint.gallery.sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        return SqliteStore(store.path, busy_timeout=0.2)
    from faceprint.gallery.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    return PostgresStore(store._url)


def fail_on(store: Store, method: str, when: Any) -> None:
    """Make ``store.<method>(*args)`` raise once ``when(*args)`` is true (a disk error)."""
    real = getattr(store, method)

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if when(*args):
            raise GalleryError("injected failure")
        return real(*args, **kwargs)

    setattr(store, method, flaky)


def record(thr: float, source: str) -> dict[str, Any]:
    """A gallery calibration for the tests' model ``m@1``, with the impostor distribution
    that a gallery calibration carries (fitted to synthetic different-person scores)."""
    from faceprint.gallery.scoring import fit_distribution

    imp = np.random.default_rng(3).normal(0.2, 0.1, 5_000)
    return {"threshold": thr, "model": "m@1", "far_target": 0.001, "tar": 0.9, "source": source,
            "impostor_pairs": len(imp), "impostors": fit_distribution(imp, "m@1", source)}  # fmt: skip


def test_calibration_and_its_threshold_are_one_transaction(store_factory: StoreFactory) -> None:
    store = store_factory()
    store.add_faces("ada", faces("ada", 2))
    g = Gallery(store)
    store.set_setting("threshold", "0.4")
    g.set_calibration(record(0.4, "first"))  # clears the fixed threshold: the calibration rules
    assert store.get_setting("threshold") is None
    fail_on(store, "set_setting", lambda key, value: key == "threshold")
    with pytest.raises(GalleryError, match="injected"):
        g.set_calibration(record(0.7, "second"))
    cal = g.calibration()
    assert cal is not None and cal["source"] == "first" and store.get_setting("threshold") is None
    with pytest.raises(GalleryError, match="injected"):
        g.set_threshold(0.55)  # would drop the calibration, then fail to store the threshold
    assert g.calibration() == cal and store.get_setting("threshold") is None
    assert g.operating_point().source == "calibrated"


def _export(store: Store, path: Path) -> list[dict[str, Any]]:
    store.add_faces("ada", faces("ada", 2), {"team": "a"})
    store.add_faces("bob", faces("bob", 3))
    store.add_faces("cyd", faces("cyd", 1))
    store.set_setting("far", "0.01")
    Gallery(store).export(path)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_import_with_a_bad_line_imports_nothing(store_factory: StoreFactory, tmp_path: Path) -> None:
    src = tmp_path / "export.jsonl"
    lines = _export(store_factory(), src)
    short = np.zeros(4, "<f4").tobytes()  # line 4 (cyd): a 4-D vector in an 8-D export
    lines[3]["faces"][0]["vector"] = base64.b64encode(short).decode()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(d) + "\n" for d in lines), encoding="utf-8")
    target = store_factory()
    with pytest.raises(GalleryError, match=r"bad\.jsonl, line 4: .*8-D"):
        Gallery(target).import_(bad)
    assert target.people() == [] and target.generation() == 0 and target.get_setting("far") is None


def test_import_failing_half_way_imports_nothing(store_factory: StoreFactory, tmp_path: Path) -> None:
    src = tmp_path / "export.jsonl"
    _export(store_factory(), src)
    target = store_factory()
    target.add_faces("zed", faces("zed", 1))
    gen = target.generation()
    fail_on(target, "add_faces", lambda person, *rest: person == "cyd")  # the third person
    with pytest.raises(GalleryError, match="injected"):
        Gallery(target).import_(src)
    assert [p.name for p in target.people()] == ["zed"] and target.generation() == gen
    assert target.get_setting("far") is None


def test_import_is_one_transaction_and_round_trips(store_factory: StoreFactory, tmp_path: Path) -> None:
    src = tmp_path / "export.jsonl"
    _export(store_factory(), src)
    target = store_factory()
    assert Gallery(target).import_(src) == (6, 0)
    assert target.generation() == 1  # one transaction: one generation step
    assert {p.name: p.faces for p in target.people()} == {"ada": 2, "bob": 3, "cyd": 1}
    assert target.get_setting("far") == "0.01"


def test_export_refuses_to_overwrite_unless_forced(store_factory: StoreFactory, tmp_path: Path) -> None:
    out = tmp_path / "backup.jsonl"
    out.write_text("my precious backup\n")
    store = store_factory()
    store.add_faces("ada", faces("ada", 1))
    with pytest.raises(GalleryError, match="already exists: pass --force"):
        Gallery(store).export(out)
    assert out.read_text() == "my precious backup\n"
    assert Gallery(store).export(out, force=True) == 1
    assert json.loads(out.read_text().splitlines()[0])["people"] == 1


class WriterAfterEachRead:
    """``store`` as the exporter sees it, while another process removes one person after
    each read call it makes: an export that does not read one snapshot misses people or
    fails on one removed between listing and reading them."""

    READS = frozenset({"model", "people", "person", "get_setting", "snapshot", "generation"})

    def __init__(self, store: Store, victims: list[str]) -> None:
        self._store, self._other, self._victims = store, second_handle(store), victims

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in self.READS:
            return attr

        def read(*args: Any, **kwargs: Any) -> Any:
            out = attr(*args, **kwargs)
            if self._victims:
                self._other.remove_person(self._victims.pop(0))
            return out

        return read


def test_export_reads_one_snapshot(store_factory: StoreFactory, tmp_path: Path) -> None:
    from faceprint.gallery.exchange import export_store

    store = store_factory()
    names = ["ada", "bob", "cyd", "dan", "eve"]
    for n in names:
        store.add_faces(n, faces(n, 2))
    meddled = WriterAfterEachRead(store, ["bob", "ada", "eve", "cyd"])
    out = tmp_path / "snap.jsonl"
    assert export_store(meddled, out) == 10  # type: ignore[arg-type]
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert lines[0]["people"] == 5 and lines[0]["faces"] == 10
    assert [d["name"] for d in lines[1:]] == names
    assert [p.name for p in store.people()] == ["dan"]  # the writer did run meanwhile


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceprint.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )


def test_cli_export_force(tmp_path: Path) -> None:
    from faceprint.gallery.sqlite import SqliteStore

    path = tmp_path / "g.sqlite"
    store = SqliteStore(path)
    store.add_faces("ada", faces("ada", 2))
    store.close()
    out = tmp_path / "backup.jsonl"
    out.write_text("keep me\n")
    res = run_cli("gallery", "export", str(out), "--gallery", str(path))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert [ln for ln in res.stderr.splitlines() if ln.startswith("error:")] == [
        f"error: {out} already exists: pass --force to overwrite it"
    ]
    assert out.read_text() == "keep me\n"
    res = run_cli("gallery", "export", str(out), "--force", "--gallery", str(path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"exported 1 people, 2 faces to {out}"
