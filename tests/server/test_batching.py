"""Identify requests served together get exactly what each would get alone."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.server.conftest import Api, running_api


def _faces(body: dict[str, Any]) -> list[list[tuple[str, float]]]:
    return [[(f["label"], round(f["matches"][0]["similarity"], 5) if f["matches"] else 0.0)
             for f in im["faces"]] for im in body["images"]]  # fmt: skip


def test_concurrent_identify_answers_equal_solo_answers(api: Api, photo: Callable[[str, str], bytes]) -> None:
    c, h = api.client, api.headers("admin")
    for name, person, file in (("Obama", "obama", "obama.jpg"), ("Biden", "biden", "biden.jpg")):
        pid = c.post("/v1/people", json={"name": name}, headers=h).json()["id"]
        r = c.post(
            f"/v1/people/{pid}/faces",
            files={"image": ("x.jpg", photo(person, file), "image/jpeg")},
            headers=h,
        )
        assert r.status_code == 201, r.text
    o2 = ("o2.jpg", photo("obama", "obama2.jpg"), "image/jpeg")
    requests = [
        ([("image", o2)], {"top_k": "1"}),
        ([("image", ("b2.jpg", photo("biden", "biden2.jpg"), "image/jpeg")),
          ("image", ("r.jpg", photo("rose_leslie", "img1.jpg"), "image/jpeg"))], {"top_k": "2"}),
        ([("image", ("k.jpeg", photo("kit_harington", "john1.jpeg"), "image/jpeg"))], {"top_k": "1"}),
        ([("image", o2)], {"top_k": "1", "threshold": "0.99"}),
    ] * 3  # fmt: skip

    def send(req: tuple[list[Any], dict[str, str]]) -> dict[str, Any]:
        r = c.post("/v1/identify", files=req[0], data=req[1], headers=h)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    solo = [send(r) for r in requests[:4]]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(send, requests))
    for i, body in enumerate(together):
        assert _faces(body) == _faces(solo[i % 4])
        assert [im["image"] for im in body["images"]] == [im["image"] for im in solo[i % 4]["images"]]
        assert body["operating_point"] == solo[i % 4]["operating_point"]
    assert _faces(solo[0]) == [[("Obama", _faces(solo[0])[0][0][1])]]
    assert _faces(solo[3])[0][0][0] == "unknown"  # the 0.99 threshold of that request only
    assert _faces(solo[1])[0][0][0] == "Biden"


def test_identify_runs_on_every_model_copy_with_solo_answers(
    tmp_path: Path, shared_recognizer: Any, photo: Callable[[str, str], bytes]
) -> None:
    """With a second model copy (``parallel`` 2), concurrent requests are spread over both
    copies, and every answer is still the one a request gets alone."""
    from faceprint.recognizer import Recognizer

    with running_api(tmp_path, shared_recognizer) as api:
        api.service.attach(shared_recognizer, [Recognizer()])
        c, h = api.client, api.headers("admin")
        pid = c.post("/v1/people", json={"name": "Obama"}, headers=h).json()["id"]
        files = {"image": ("x.jpg", photo("obama", "obama.jpg"), "image/jpeg")}
        assert c.post(f"/v1/people/{pid}/faces", files=files, headers=h).status_code == 201
        probes = [photo("obama", "obama2.jpg"), photo("biden", "biden.jpg"), photo("rose_leslie", "img1.jpg")]

        def send(i: int) -> dict[str, Any]:
            r = c.post("/v1/identify", files={"image": ("p.jpg", probes[i % 3], "image/jpeg")}, headers=h)
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            return body

        solo = [send(i) for i in range(3)]
        with ThreadPoolExecutor(6) as pool:
            together = list(pool.map(send, range(30)))
        for i, body in enumerate(together):
            assert _faces(body) == _faces(solo[i % 3])
        assert _faces(solo[0])[0][0][0] == "Obama" and _faces(solo[1])[0][0][0] == "unknown"
        served = api.service.batcher.served
        assert served.get(0, 0) > 0 and served.get(1, 0) > 0, served
        assert sum(served.values()) == 33


def test_models_load_as_configured_copies_and_the_search_is_ready(
    tmp_path: Path, shared_recognizer: Any, photo: Callable[[str, str], bytes]
) -> None:
    """``load_models`` builds ``parallel`` copies and searches the gallery once before the
    service says it is ready (the first request must not build the index)."""
    from faceprint.gallery import open_store
    from faceprint.gallery.gallery import Gallery
    from faceprint.server.config import ServiceConfig
    from faceprint.server.engine import Service

    where = str(tmp_path / "g.sqlite")
    with Gallery(open_store(where), shared_recognizer) as g:
        g.enroll("Obama", [photo("obama", "obama.jpg")])
    svc = Service(ServiceConfig(gallery=where, service_db=str(tmp_path / "s.sqlite"), parallel=2))
    try:
        assert svc.config.resolved_threads() is not None  # the cores shared out, not oversubscribed
        svc.load_models()
        assert svc.load_error is None and svc.loaded.is_set()
        assert len(svc.copies) == 1 and svc.copies[0].recognizer is not svc.recognizer
        state = svc.store._search._state  # the index was built from the gallery's snapshot
        assert state is not None and state[0].generation == svc.store.generation()
    finally:
        svc.close()
