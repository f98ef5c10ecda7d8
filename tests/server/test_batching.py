"""Identify requests served together get exactly what each would get alone."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.server.conftest import Api


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
