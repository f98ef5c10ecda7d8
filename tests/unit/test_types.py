import numpy as np

from faceprint.types import UNKNOWN, Box, Face, Match, Recognition, Verification


def test_box_geometry_and_iou() -> None:
    a = Box(0, 0, 10, 10)
    b = Box(5, 5, 15, 15)
    assert a.width == 10 and a.height == 10 and a.area == 100
    assert a.center == (5.0, 5.0)
    assert abs(a.iou(b) - 25 / 175) < 1e-9
    assert a.iou(Box(20, 20, 30, 30)) == 0.0
    assert Box(-5, -5, 50, 8).clip(20, 20) == Box(0, 0, 20, 8)


def test_recognition_label_uses_threshold() -> None:
    f = Face(Box(0, 0, 1, 1), 0.9)
    hit = Recognition(f, (Match("ann", 0.95, "1"), Match("bob", 0.5, "2")), threshold=0.9)
    miss = Recognition(f, (Match("ann", 0.85, "1"),), threshold=0.9)
    assert hit.label == "ann" and hit.best is not None and hit.best.identity == "ann"
    assert miss.label == UNKNOWN
    assert Recognition(f, (), 0.9).label == UNKNOWN
    assert hit.to_dict()["label"] == "ann"


def test_face_with_embedding_is_a_copy() -> None:
    f = Face(Box(0, 0, 1, 1), 0.9, landmarks=np.zeros((5, 2), np.float32))
    g = f.with_embedding(np.ones(4, np.float32) / 2, "m@1")
    assert f.embedding is None and g.embedding is not None
    d = g.to_dict()
    assert d["embedding_model"] == "m@1" and len(d["embedding"]) == 4
    assert d["landmark_scheme"] == "std5"


def test_verification_dict() -> None:
    v = Verification(0.97, 0.93, True, "yunet", "dlib", notes=("x",))
    d = v.to_dict()
    assert d["same"] is True and d["detector"] == "yunet" and d["notes"] == ["x"]
