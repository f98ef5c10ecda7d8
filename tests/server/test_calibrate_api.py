"""``POST /v1/calibrate``: a labelled zip calibrates the service's gallery exactly as
``faceprint calibrate --dir DIR --gallery G`` does (same library call, same record), with
nothing left on the server's disk. Hostile archives are in test_security.py."""

from __future__ import annotations

import io
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from tests.server.archives import lfw_zip, zip_of
from tests.server.conftest import Api, running_api

from faceprint.server.config import Limits


def _leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("faceprint-calibrate-*")}


def _post(api: Api, data: bytes, role: str = "admin", **fields: str) -> Any:
    return api.client.post(
        "/v1/calibrate",
        files={"archive": ("calib.zip", data, "application/zip")},
        data=fields,
        headers=api.headers(role),
    )


def test_calibrate_stores_the_same_calibration_as_the_cli(
    api: Api, tmp_path: Path, shared_recognizer: Any
) -> None:
    from faceprint.evaluation.calibration import calibrate

    before = _leftovers()
    extra = {"calib/README.txt": b"notes", "calib/__MACOSX/x/._a.jpg": b"junk", "calib/top.jpg": b"no label"}
    data = lfw_zip(top="calib", extra=extra)
    r = _post(api, data, far="0.01")
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["far_target"] == 0.01 and rec["images"] == 51 and rec["failed_images"] == 0
    assert rec["impostor_pairs"] == 1224 and rec["genuine_pairs"] == 17 * 3
    assert rec["source"] == "archive calib.zip" and rec["model"] == shared_recognizer.model_id
    assert rec["archive"]["people"] == 17 and rec["archive"]["images"] == 51
    assert rec["archive"]["ignored"] == 3
    assert rec["operating_point"]["source"] == "calibrated"
    assert "gallery" not in rec  # the CLI names the gallery's location; the service never does
    assert "faceprint-calibrate" not in r.text and str(api.service.store.location) not in r.text

    # the library on the same folders, as the CLI runs it, gives the same calibration
    with zipfile.ZipFile(io.BytesIO(lfw_zip())) as zf:
        zf.extractall(tmp_path / "calib")
    cli = calibrate(shared_recognizer, 0.01, dir=tmp_path / "calib", fit_impostors=True)
    for k in ("threshold", "far", "tar", "impostor_pairs", "genuine_pairs"):
        assert rec[k] == cli[k], k
    assert rec["impostors"]["score"] == cli["impostors"]["score"]

    stored = api.service.gallery.calibration()
    assert stored is not None and stored["threshold"] == rec["threshold"]
    assert stored["source"] == stored["impostors"]["source"] == "archive calib.zip"
    r = api.client.get("/v1/settings/threshold", headers=api.headers("admin"))
    assert r.json()["source"] == "calibrated" and r.json()["threshold"] == rec["operating_point"]["threshold"]

    (entry, *_) = api.service.db.audit_log()
    assert entry["action"] == "settings.calibrate" and entry["actor"] == "test-admin"
    assert _leftovers() == before


def test_a_bare_person_layout_and_the_default_far(api: Api) -> None:
    r = _post(api, lfw_zip())  # <person>/<image> at the top; far defaults to 1e-3
    assert r.status_code == 200, r.text
    assert r.json()["far_target"] == 1e-3 and r.json()["archive"]["ignored"] == 0


@pytest.mark.parametrize(
    ("archive", "fields", "needle"),
    [
        (lambda: lfw_zip(people=1), {}, "at least 2"),
        (lambda: lfw_zip(people=4, per_person=3), {}, "at least 1000"),
        (lambda: lfw_zip(), {"far": "1e-5"}, "unreachable"),
        (lambda: lfw_zip(), {"far": "1"}, "(0, 1)"),
        (lambda: lfw_zip(), {"face": "all"}, "largest, central"),
        (lambda: zip_of({"a.txt": b"x", "b/c.txt": b"y"}), {}, "2 entries skipped"),
    ],
)
def test_too_little_or_bad_fields_is_422_before_any_model_runs(
    api: Api, archive: Any, fields: dict[str, str], needle: str
) -> None:
    before = _leftovers()
    r = _post(api, archive(), **fields)
    assert r.status_code == 422, r.text
    assert r.json()["type"].endswith(":invalid-field") and needle in r.json()["detail"], r.text
    assert api.service.gallery.calibration() is None
    assert _leftovers() == before


def test_the_archive_field_must_be_a_zip_file(api: Api) -> None:
    h = api.headers("admin")
    url = {"archive": (None, "https://example.org/faces.zip")}  # a text part of a multipart body
    r = api.client.post("/v1/calibrate", files=url, headers=h)
    assert r.status_code == 422 and "never fetches URLs" in r.json()["detail"], r.text
    r = api.client.post("/v1/calibrate", data={"archive": "https://example.org/faces.zip"}, headers=h)
    assert r.status_code == 415 and "never fetches URLs" in r.json()["detail"], r.text
    r = api.client.post("/v1/calibrate", files={"other": ("x.zip", b"PK", "application/zip")}, headers=h)
    assert r.status_code == 422 and "'archive'" in r.json()["detail"]
    r = _post(api, b"this is no zip file")
    assert r.status_code == 422 and r.json()["type"].endswith(":bad-archive"), r.text
    assert _post(api, lfw_zip(people=2), role="enrol").status_code == 403
    doc = api.client.get("/openapi.json").json()["paths"]["/v1/calibrate"]["post"]
    assert "archive" in doc["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]


def test_a_calibration_that_times_out_stores_nothing(tmp_path: Path, shared_recognizer: Any) -> None:
    """504 after ``calibrate_timeout_s`` (not the per-request timeout); the abandoned
    thread stores nothing and the temporary folder is gone."""
    before = _leftovers()
    with running_api(
        tmp_path, shared_recognizer, limits=Limits(timeout_s=0.2, calibrate_timeout_s=1.5)
    ) as api:
        lock: threading.Lock = api.service.model_lock
        with lock:  # the models are busy past the calibration's timeout
            r = _post(api, lfw_zip())
        assert r.status_code == 504, r.text
        time.sleep(0.5)  # the abandoned thread gets the models and stops at once
        with lock:
            pass
        assert api.service.gallery.calibration() is None
        assert not any(e["action"] == "settings.calibrate" for e in api.service.db.audit_log())
    assert _leftovers() == before
