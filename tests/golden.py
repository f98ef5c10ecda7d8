"""Golden detector outputs: a detector's faces against outputs recorded from a reference
implementation (``tests/integration/fixtures/*_reference.json``; each file's ``origin``
says what ran, with which versions and options). Faces are paired by IoU, one to one."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from conftest import SHARED, need
from faceprint.io import load_image
from faceprint.types import Box, Face, Image

FIXTURES = Path(__file__).parent / "integration" / "fixtures"
MIN_IOU = 0.95
MAX_LANDMARK_PX = 1.0
MAX_SCORE_DIFF = 0.01


def reference(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    assert data["origin"].startswith("Recorded from"), "a fixture must say where it came from"
    return data


def check_faces(detect: Callable[[Image], list[Face]], images: dict[str, Any]) -> int:
    """Assert ``detect`` finds the recorded faces of every image (paths relative to
    ``../shared/data``): as many, each paired with a distinct one of ours by best IoU, with
    IoU >= MIN_IOU, every landmark within MAX_LANDMARK_PX and the score within
    MAX_SCORE_DIFF. Returns the number of faces checked."""
    checked = 0
    for rel, rec in images.items():
        path = need(SHARED / "data" / rel)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == rec["sha256"], f"{rel}: not the recorded file"
        ours = detect(load_image(path))
        n = len(rec["faces"])
        assert len(ours) == n, f"{rel}: {len(ours)} faces, the reference found {n}"
        used: set[int] = set()
        for ref in rec["faces"]:
            box = Box(*ref["box"])
            i = max(range(len(ours)), key=lambda k: ours[k].box.iou(box))
            f = ours[i]
            assert i not in used, f"{rel}: two reference faces pair with our face {f.box}"
            used.add(i)
            assert f.box.iou(box) >= MIN_IOU, f"{rel}: IoU {f.box.iou(box):.3f} with the reference's {box}"
            assert f.landmarks is not None
            off = float(np.linalg.norm(f.landmarks - np.asarray(ref["landmarks"]), axis=1).max())
            assert off <= MAX_LANDMARK_PX, f"{rel}: a landmark {off:.2f} px from the reference's ({box})"
            assert abs(f.score - ref["score"]) <= MAX_SCORE_DIFF, f"{rel}: score {f.score} vs {ref['score']}"
            checked += 1
    return checked
