"""Model ids (which weights made a vector), their migration in old galleries and exports,
the gallery's impostor distribution (shipped, calibrated, corrupt, missing), and the typed
Store contract. No model weights needed."""

from __future__ import annotations

import inspect
import json
import sqlite3
import uuid
from pathlib import Path

import numpy as np
import pytest

from faceprint.embedding import model_id
from faceprint.errors import GalleryError
from faceprint.gallery import scoring
from faceprint.gallery.gallery import Gallery
from faceprint.gallery.postgres import PostgresStore
from faceprint.gallery.records import FaceRecord, Store, upgrade_model_id
from faceprint.gallery.sqlite import SqliteStore

STOCK = "dlib@resnet_v1+55533b28"  # dlib's published .dat: 55533b28a958...
RNG = np.random.default_rng(0)


class FakeEmbedder:
    name = "dlib-onnx"
    network = "dlib"
    version = "resnet_v1"
    dim = 8
    default_threshold = 0.9

    def __init__(self, sha: str) -> None:
        self.weights_sha256 = sha
        self.crop_templates: tuple[dict[str, object], ...] = ({},)


def unit(n: int, dim: int = 8) -> np.ndarray:
    v = RNG.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def records(person: str, n: int, model: str) -> list[FaceRecord]:
    return [FaceRecord(uuid.uuid4().hex, person, v, model, f"{person}{i}") for i, v in enumerate(unit(n))]


# -- the id -------------------------------------------------------------------------------
def test_model_id_names_network_version_weights_and_flip() -> None:
    sha = "55533B28A95800A551BA546BA62FE69625C7E95A7061C338ADFFEAD08719DA30"
    emb = FakeEmbedder(sha)
    assert model_id(emb) == STOCK  # type: ignore[arg-type]
    assert model_id(emb, flip=True) == STOCK + "+flip"  # type: ignore[arg-type]
    assert model_id(FakeEmbedder("0" * 64)) == "dlib@resnet_v1+00000000"  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hex sha256"):
        model_id(FakeEmbedder("not-a-sha"))  # type: ignore[arg-type]


def test_ids_of_older_releases_map_to_the_published_weights() -> None:
    assert upgrade_model_id("dlib-onnx@resnet_v1") == STOCK
    assert upgrade_model_id("dlib@resnet_v1") == STOCK
    assert upgrade_model_id("dlib-onnx@resnet_v1+flip") == STOCK + "+flip"
    for current in (STOCK, STOCK + "+flip", "dlib@resnet_v1+deadbeef", "arcface@r100"):
        assert upgrade_model_id(current) is None  # current or unknown: left alone


# -- migration of an old gallery file ----------------------------------------------------
def _old_gallery(path: Path, old: str = "dlib-onnx@resnet_v1") -> None:
    """An SQLite gallery as the previous release wrote it: same schema, ``name@version`` ids
    in meta, in every face and in a stored calibration record."""
    s = SqliteStore(path)
    s.add_faces("ann", records("ann", 2, old))
    s.add_faces("bob", records("bob", 1, old))
    s.set_setting("calibration", json.dumps({"threshold": 0.93, "model": old, "far_target": 0.001}))
    s.set_setting("threshold", "0.93")
    s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE key = 'model'").fetchone() == (old,)
    conn.close()


def test_an_old_gallery_is_migrated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _old_gallery(path)
    s = SqliteStore(path)
    assert s.model() == (STOCK, 8)
    assert {f.model for n in ("ann", "bob") for f in s.person(n)[1]} == {STOCK}
    assert json.loads(s.get_setting("calibration") or "{}")["model"] == STOCK
    gen = s.generation()
    s.close()
    s = SqliteStore(path)  # once: a second open finds nothing to do
    assert s.model() == (STOCK, 8) and s.generation() == gen
    g = Gallery(s)
    op = g.operating_point()  # the migrated calibration still belongs to the gallery's model
    assert op.source == "calibrated" and "older faceprint" in op.note
    g.close()


def test_an_unmigrated_gallery_says_how_to_upgrade_it() -> None:
    from faceprint.gallery.gallery import _mismatch_hint

    assert "open it once where it can be written" in _mismatch_hint("dlib-onnx@resnet_v1", STOCK)
    assert "weights differ" in _mismatch_hint(STOCK, "dlib@resnet_v1+deadbeef")
    assert _mismatch_hint(STOCK, STOCK + "+flip") == "drop --flip"
    assert _mismatch_hint(STOCK + "+flip", STOCK) == "use --flip"


def test_migration_is_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    _old_gallery(path)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TRIGGER no_updates BEFORE UPDATE ON faces BEGIN SELECT RAISE(ABORT, 'boom'); END")
    conn.commit()
    conn.close()
    with pytest.raises(GalleryError, match="cannot upgrade its model ids"):
        SqliteStore(path)
    conn = sqlite3.connect(path)  # the meta row, updated first, was rolled back with the rest
    assert conn.execute("SELECT value FROM meta WHERE key = 'model'").fetchone() == ("dlib-onnx@resnet_v1",)
    assert conn.execute("SELECT DISTINCT model FROM faces").fetchall() == [("dlib-onnx@resnet_v1",)]
    conn.close()


def test_an_old_export_imports_into_a_current_gallery(tmp_path: Path) -> None:
    src = SqliteStore(tmp_path / "a.sqlite")
    src.add_faces("ann", records("ann", 2, STOCK))
    g = Gallery(src)
    out = tmp_path / "old.jsonl"
    g.export(out)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    lines[0]["model"] = "dlib-onnx@resnet_v1"  # as the previous release wrote it
    for person in lines[1:]:
        for f in person["faces"]:
            f["model"] = "dlib-onnx@resnet_v1"
    out.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    dst = SqliteStore(tmp_path / "b.sqlite")
    dst.add_faces("bob", records("bob", 1, STOCK))
    assert Gallery(dst).import_(out) == (2, 0)
    assert {f.model for f in dst.person("ann")[1]} == {STOCK}


# -- the impostor distribution behind the open-set threshold -----------------------------
def _gallery(tmp_path: Path, model: str, people: int) -> Gallery:
    s = SqliteStore(tmp_path / f"g{people}.sqlite")
    for i in range(people):
        s.add_faces(f"p{i}", records(f"p{i}", 1, model))
    return Gallery(s)  # no recognizer: nothing here loads a model


def test_a_corrupt_shipped_distribution_is_an_error_not_a_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = tmp_path / "impostors"
    shipped.mkdir()
    (shipped / f"{STOCK}.json").write_text('{"format": 1, "model": "' + STOCK + '", "score": [')
    monkeypatch.setattr(scoring, "IMPOSTOR_DIR", shipped)
    scoring.shipped_distribution.cache_clear()
    try:
        g = _gallery(tmp_path, STOCK, 3)
        with pytest.raises(GalleryError, match="is corrupt"):
            g.operating_point()
    finally:
        scoring.shipped_distribution.cache_clear()


def test_weights_without_a_distribution_fall_back_and_say_why(tmp_path: Path) -> None:
    g = _gallery(tmp_path, "dlib@resnet_v1+deadbeef+flip", 3)  # fine-tuned weights
    op = g.operating_point()
    assert op.source == "embedder default" and op.threshold == pytest.approx(0.910)  # dlib's flip 1:1
    assert "no impostor score distribution is shipped for model dlib@resnet_v1+deadbeef+flip" in op.note
    assert "calibrate --gallery" in op.note
    flip = _gallery(tmp_path, STOCK + "+flip", 4)
    assert flip.operating_point().source == "open-set"  # the shipped flip distribution


def _calibration(model: str, n: int = 200_000) -> dict[str, object]:
    imp = np.clip(RNG.normal(0.83, 0.035, n), -1, 1)  # impostor scores like LFW's
    thr = float(np.quantile(imp, 1 - 1e-3))
    return {
        "threshold": thr,
        "model": model,
        "far_target": 1e-3,
        "tar": 0.9,
        "impostor_pairs": n,
        "source": "folder x",
        "impostors": scoring.fit_distribution(imp, model, "folder x"),
    }


def test_calibrating_a_gallery_keeps_the_threshold_growing_with_its_size(tmp_path: Path) -> None:
    """The defect: calibrate --gallery stored the 1:1 threshold (FAR 1e-3 per pair) as the
    gallery's threshold, so a gallery of K people named strangers far more often."""
    rec = _calibration(STOCK)
    small, large = _gallery(tmp_path, STOCK, 5), _gallery(tmp_path, STOCK, 300)
    for g in (small, large):
        g.set_calibration(rec)
        assert g.calibration() == rec
    a, b = small.operating_point(), large.operating_point()
    assert a.source == b.source == "calibrated" and a.far == b.far == scoring.DEFAULT_FAR
    assert a.threshold < b.threshold  # grows with the number of people
    dist = scoring.ImpostorDistribution(rec["impostors"])  # type: ignore[arg-type]
    assert b.threshold == pytest.approx(scoring.open_set_threshold(dist, 300, scoring.DEFAULT_FAR))
    assert b.threshold > float(rec["threshold"])  # 300 people, 1%: stricter than 1e-3 per pair
    assert large.store.get_setting("threshold") is None  # no fixed threshold stored
    large.set_threshold(None)  # back to the shipped distribution
    assert large.operating_point().source == "open-set"


def test_a_calibration_without_impostor_scores_is_refused(tmp_path: Path) -> None:
    g = _gallery(tmp_path, STOCK, 2)
    rec = {k: v for k, v in _calibration(STOCK).items() if k != "impostors"}
    with pytest.raises(GalleryError, match="impostor distribution"):
        g.set_calibration(rec)
    with pytest.raises(GalleryError, match="carries an impostor distribution of"):
        g.set_calibration({**_calibration(STOCK + "+flip"), "model": STOCK})


def test_fit_distribution_recovers_a_known_tail() -> None:
    s = RNG.normal(0.5, 0.05, 2_000_000)  # exact quantiles: 0.5 + 0.05 * (3.090, 4.265, 5.199)
    d = scoring.ImpostorDistribution(scoring.fit_distribution(s, "toy@1", "normal"))
    assert d.quantile_exceedance(1e-3) == pytest.approx(0.6545, abs=0.001)
    assert d.quantile_exceedance(1e-5) == pytest.approx(0.7133, abs=0.003)
    assert d.quantile_exceedance(1e-7) == pytest.approx(0.7600, abs=0.015)  # the GPD beyond the data
    with pytest.raises(GalleryError, match="too few"):
        scoring.fit_distribution(s[:999], "toy@1", "normal")


# -- the Store contract -------------------------------------------------------------------
def test_both_stores_implement_every_member_of_the_contract() -> None:
    members = [m for m in dir(Store) if not m.startswith("_")] + list(inspect.get_annotations(Store))
    for needed in ("count_people", "search_faces", "centroids", "index_path"):
        assert needed in members
    for cls in (SqliteStore, PostgresStore):
        missing = [m for m in members if not hasattr(cls, m) and m not in ("location", "index_path")]
        assert missing == [], (cls.__name__, missing)
    assert PostgresStore.index_path is None


def test_sqlite_searches_exactly_through_the_store(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "g.sqlite")
    assert s.search_faces(unit(2), 3) == [[], []] and s.centroids(["x"]) == {}
    recs = records("ann", 3, STOCK) + records("bob", 2, STOCK)
    s.add_faces("ann", recs[:3])
    s.add_faces("bob", recs[3:])
    q = unit(4)
    got = s.search_faces(q, 5)
    vecs = np.stack([r.vector for r in recs])
    for row, hits in zip(q, got, strict=True):
        want = sorted(((float(v @ row), r.face_id) for v, r in zip(vecs, recs, strict=True)), reverse=True)
        assert [h[0] for h in hits] == [fid for _, fid in want]  # exact: every face, in order
    c = s.centroids(["ann", "bob", "nobody"])
    assert set(c) == {"ann", "bob"}
    mean = vecs[:3].sum(axis=0)
    np.testing.assert_allclose(c["ann"], mean / np.linalg.norm(mean), atol=1e-6)
    s.add_faces("cat", records("cat", 1, STOCK))  # a write moves the generation: searched again
    assert len(s.search_faces(q, 10)[0]) == 6


def test_calibrate_help_tells_the_two_rates_apart() -> None:
    from typer.testing import CliRunner

    from faceprint.cli.main import app

    res = CliRunner().invoke(app, ["calibrate", "--help"], env={"COLUMNS": "200"})
    text = " ".join(res.output.split())
    assert res.exit_code == 0
    assert "the 1:1 false-accept rate (--far) is the fraction of different-person pairs" in text
    assert "The 1:N stranger false-alarm rate is the chance that identify names someone" in text
