"""The second embedders and the fusions cannot silently lose accuracy.

Each embedder of ``bench/fusion.py``'s table (dlib-onnx, mobilefacenet, faceplugin and
every fusion of them), plain, must score on LFW pairsDevTest, at the threshold faceprint
ships for it (fitted on pairsDevTrain), within one point of the figure the benchmark
published in ``bench/results/fusion.json`` (the README's table, checked below too).

Cost: one pass over the 1,549 pairsDevTest images: YuNet once per image, the crops of
every part cut from that one detection, embedded by the three-part fused embedder's
parts; each fusion's vectors are then made by that fusion's own
:meth:`~faceprint.embedding.fused.FusedEmbedder.combine`, the code every fused vector goes
through.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import LFW, MODELS, REPO, need

BENCH = REPO / "bench" / "results" / "fusion.json"
README = REPO / "README.md"
TOLERANCE = 0.01
ALL = "dlib-onnx+mobilefacenet+faceplugin"
#: Every row of the benchmark's table: the parts, then every fusion of two or three.
NAMES = (
    "dlib-onnx",
    "mobilefacenet",
    "faceplugin",
    "dlib-onnx+mobilefacenet",
    "dlib-onnx+faceplugin",
    "mobilefacenet+faceplugin",
    ALL,
)


def published() -> dict[str, dict[str, Any]]:
    """The benchmark's plain rows by embedder."""
    return {r["embedder"]: r for r in json.loads(BENCH.read_text())["rows"] if not r["flip"]}


def test_the_readme_shows_the_published_figures() -> None:
    text = README.read_text()
    assert sorted(published()) == sorted(NAMES)
    for name, row in published().items():
        cell = f"| {name} | {100 * row['test_accuracy']:.1f}% |"
        assert cell in text, f"README's embedder table does not show {cell} ({BENCH.relative_to(REPO)})"


@pytest.fixture(scope="module")
def part_vectors() -> tuple[dict[Path, list[np.ndarray] | None], Any]:
    """Each pairsDevTest image's part vectors (None: no face), and the pairs file."""
    from faceprint.evaluation.pairs import central_face, read_pairs
    from faceprint.io import load_image
    from faceprint.recognizer import Recognizer

    test = read_pairs(need(LFW / "pairsDevTest.txt"))
    for f in ("npm/expo_mobilefacenet.tflite", "npm/faceplugin_fr_feature.onnx"):
        need(MODELS / f)
    paths = sorted({p for pr in test.pairs for p in pr.paths(LFW)})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEPRINT_MODELS", str(MODELS))
        rec = Recognizer("yunet", ALL)
        out: dict[Path, list[np.ndarray] | None] = {}
        for start in range(0, len(paths), 32):
            chunk, crops = [], []
            for p in paths[start : start + 32]:
                img = load_image(need(p))
                face = central_face(rec.detector.detect(img), img.shape)
                out[p] = None
                if face is not None:
                    chunk.append(p)
                    crops += rec.crops(img, face)
            parts = rec.embedder.embed_parts(crops)
            for i, p in enumerate(chunk):
                out[p] = [v[i] for v in parts]
    return out, test


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_pairsdevtest_accuracy_stays_within_a_point(
    name: str, part_vectors: tuple[dict[Path, list[np.ndarray] | None], Any]
) -> None:
    from faceprint.evaluation import metrics
    from faceprint.registry import create_embedder, embedder_parts, embedders, is_fused

    if name not in published():
        pytest.fail(f"{name} has no published figure: run bench/fusion.py")
    vecs, test = part_vectors
    order = ["dlib-onnx", "mobilefacenet", "faceplugin"]
    if is_fused(name):
        emb = create_embedder(name, threads=1)
        pick = [order.index(p) for p in embedder_parts(name)]
        threshold = emb.default_threshold

        def vector(parts: list[np.ndarray]) -> np.ndarray:
            return emb.combine([parts[i][None] for i in pick])[0]
    else:
        threshold = embedders.resolve(name).default_threshold

        def vector(parts: list[np.ndarray]) -> np.ndarray:
            return parts[order.index(name)]

    scores = []
    for pr in test.pairs:
        a, b = (vecs[p] for p in pr.paths(LFW))
        scores.append(metrics.NO_FACE_SCORE if a is None or b is None else float(vector(a) @ vector(b)))
    got = metrics.accuracy(np.array(scores), test.labels(), threshold)
    want = published()[name]["test_accuracy"]
    assert got >= want - TOLERANCE - 1e-9, (
        f"{name}: {got:.1%} on pairsDevTest at its shipped threshold {threshold}, more than 1 point "
        f"under the published {want:.1%} ({BENCH.relative_to(REPO)})"
    )
