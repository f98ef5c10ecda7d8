"""People through the API: create, enrol, identify, rename, delete; ids are opaque."""

from __future__ import annotations

from collections.abc import Callable

from tests.server.conftest import Api


def test_enrol_identify_delete_round_trip(api: Api, photo: Callable[[str, str], bytes]) -> None:
    c, h = api.client, api.headers("enrol")
    r = c.post("/v1/people", json={"name": "Barack Obama", "metadata": {"team": "a"}}, headers=h)
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    assert r.headers["location"] == f"/v1/people/{pid}"
    r = c.post(
        f"/v1/people/{pid}/faces",
        files={"image": ("o1.jpg", photo("obama", "obama.jpg"), "image/jpeg")},
        headers=h,
    )
    assert r.status_code == 201, r.text
    assert [a["image"] for a in r.json()["added"]] == ["o1.jpg"]
    r = c.post(
        f"/v1/people/{pid}/faces",
        files={"image": ("again.jpg", photo("obama", "obama.jpg"), "image/jpeg")},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["duplicates"][0]["image"] == "again.jpg"

    probe = {"image": ("probe.jpg", photo("obama", "obama2.jpg"), "image/jpeg")}
    r = c.post("/v1/identify", files=probe, headers=api.headers("recognise"))
    assert r.status_code == 200, r.text
    (face,) = r.json()["images"][0]["faces"]
    assert face["label"] == "Barack Obama"
    assert r.json()["operating_point"]["people"] == 1

    r = c.patch(f"/v1/people/{pid}", json={"name": "Obama"}, headers=h)
    assert r.status_code == 200 and r.json()["name"] == "Obama" and r.json()["id"] == pid

    r = c.delete(f"/v1/people/{pid}", headers=h)
    assert r.status_code == 200 and r.json()["removed_faces"] == 1
    r = c.post("/v1/identify", files=probe, headers=api.headers("recognise"))
    assert r.json()["images"][0]["faces"][0]["label"] == "unknown"
    assert c.get(f"/v1/people/{pid}", headers=h).status_code == 404

    actions = [e["action"] for e in api.service.db.audit_log()]
    assert actions[:5] == ["person.delete", "person.update", "face.add", "person.create", "key.create"]
    assert all(e["actor"] == "test-enrol" for e in api.service.db.audit_log()[:4])


def test_a_taken_name_is_409_and_a_path_as_id_is_404(api: Api) -> None:
    c, h = api.client, api.headers("enrol")
    assert c.post("/v1/people", json={"name": "Ann"}, headers=h).status_code == 201
    r = c.post("/v1/people", json={"name": "Ann"}, headers=h)
    assert r.status_code == 409 and r.json()["type"].endswith(":name-taken")
    for bad in ("..%2F..%2Fetc%2Fpasswd", "../../etc/passwd", "1", "Ann"):
        r = c.get(f"/v1/people/{bad}", headers=h)
        assert r.status_code == 404, (bad, r.text)
        assert "etc/passwd" not in r.text or bad.startswith("..%2F")
