"""An HTML evaluation report built from real LFW photos and real YuNet face boxes.

The report (with its face thumbnails) is written to a temporary directory only: the
photos belong to third parties and no report or thumbnail is ever committed. Scores are
seeded random numbers: this test is about the report, not about accuracy.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from conftest import missing_data
from faceprint.detection.yunet import YuNetDetector
from faceprint.evaluation.metrics import NO_FACE_SCORE
from faceprint.evaluation.pairs import central_face, read_pairs
from faceprint.evaluation.report import ErrorCase, ErrorSection, Figure, Thumb, hardest_errors, write_report
from faceprint.io import load_image
from faceprint.types import Box
from html_check import decode_data_uri, parse_report

N_PAIRS = 80  # 40 same-person, 40 different-person pairs from the dev test file


def _figure(scores: np.ndarray, labels: np.ndarray) -> bytes:
    """A score histogram as PNG: matplotlib (Agg) when installed, else drawn with Pillow,
    so the PNG path of the report is tested either way."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        img = PILImage.new("RGB", (320, 200), "white")
        px = img.load()
        assert px is not None
        for i, (s, same) in enumerate(zip(scores, labels, strict=True)):
            for y in range(200 - int(150 * max(s, 0.0)), 200):
                px[5 + 6 * i % 310, y] = (40, 160, 40) if same else (200, 40, 40)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()
    fig, ax = plt.subplots(figsize=(5, 3), dpi=80)
    ax.hist([scores[labels], scores[~labels]], bins=20, label=["same", "different"])
    ax.set_xlabel("cosine similarity")
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def test_report_from_lfw_pairs(lfw: Path, yunet_model: Path, tmp_path: Path) -> None:
    pf = read_pairs(lfw / "pairsDevTest.txt")
    half = len(pf.pairs) // 2
    pairs = list(pf.pairs[:half:12][: N_PAIRS // 2]) + list(pf.pairs[half::12][: N_PAIRS // 2])
    det = YuNetDetector(model_path=str(yunet_model))
    boxes: dict[Path, Box | None] = {}
    for pr in pairs:
        for p in pr.paths(lfw):
            if p not in boxes:
                img = load_image(p)
                face = central_face(det.detect(img), img.shape)
                boxes[p] = face.box if face is not None else None
    assert sum(b is not None for b in boxes.values()) >= 0.9 * len(boxes)

    labels = np.array([pr.same for pr in pairs])
    rng = np.random.default_rng(7)
    scores = rng.uniform(0.1, 1.0, len(pairs))  # overlapping classes: more than 20 errors of each kind
    scores[1] = NO_FACE_SCORE  # a same-person pair where a face was missing
    threshold = 0.6
    fa, fr = hardest_errors(scores, labels, threshold, n=20)
    assert len(fa) == len(fr) == 20, (len(fa), len(fr))
    assert 1 not in fr, "the pair without a face comes after the 20 scored false rejects"
    assert hardest_errors(scores, labels, threshold, n=len(pairs))[1][-1] == 1
    assert all(scores[a] >= scores[b] for a, b in itertools.pairwise(fa))

    def case(i: int, kind: str) -> ErrorCase:
        a, b = pairs[i].paths(lfw)
        return ErrorCase(
            Thumb(a, boxes[a], a.stem),
            Thumb(b, boxes[b], b.stem),
            float(scores[i]),
            f"{kind}: {a.stem} vs {b.stem}, similarity {scores[i]:.3f} vs threshold {threshold}",
        )

    fa_cases = [case(i, "false accept") for i in fa]
    fr_cases = [case(i, "false reject") for i in fr]
    # a photo that has gone missing since the evaluation, and a person name to escape
    fr_cases.append(ErrorCase(Thumb(lfw / "Nobody" / "Nobody_0001.jpg", label='<b>&"x"'), None, 0.1, "gone"))
    out = write_report(
        tmp_path / "reports" / "lfw.html",
        title='LFW dev test <b>&"x"',
        summary={
            "accuracy": float(np.mean((scores >= threshold) == labels)),
            "threshold": threshold,
            "pairs": {"same": int(labels.sum()), "different": int((~labels).sum())},
            "tar_at_far": [{"far": 1e-3, "tar": None}, {"far": 1e-2, "tar": 0.5}],
        },
        description={
            "detector": "yunet",
            "embedder": "none (seeded random scores)",
            "dataset": str(lfw),
            "protocol": "pairsDevTest subset",
        },
        figures=[Figure("Score distributions", _figure(scores, labels))],
        errors=[
            ErrorSection("False accepts (impostor pairs scored highest)", fa_cases),
            ErrorSection("False rejects (genuine pairs scored lowest)", fr_cases, note="a photo is missing"),
            ErrorSection("Identification errors", []),
        ],
    )

    text = out.read_text(encoding="utf-8")
    doc = parse_report(text)
    assert doc.doctype.lower() == "doctype html" and doc.charset == "utf-8"
    assert doc.external == [], "the report must not reference anything outside itself"
    assert 'src="http' not in text and "file:" not in text
    assert '<b>&"x"' not in text and "&lt;b&gt;&amp;&quot;x&quot;" in text
    n_thumbs = 2 * (len(fa) + len(fr))
    kinds = [decode_data_uri(i["src"]) for i in doc.imgs]
    assert sorted(k for k, _ in kinds).count("image/jpeg") == n_thumbs
    assert [k for k, _ in kinds].count("image/png") == 1
    assert all(im.size == (112, 112) for k, im in kinds if k == "image/jpeg")
    assert len(doc.placeholders) == 1 and "no such file" in doc.placeholders[0]
    assert doc.text.count("No errors of this kind.") == 1
    assert n_thumbs >= 40 and out.stat().st_size < 1_500_000, f"{out.stat().st_size} bytes"


@pytest.mark.parametrize("size", [64, 160])
def test_thumbnails_follow_thumb_size(lfw: Path, tmp_path: Path, size: int) -> None:
    photo = next(iter(sorted((lfw / "Abdullah_Gul").glob("*.jpg"))), None)
    if photo is None:
        missing_data(f"no photo of Abdullah_Gul under {lfw}")
    out = write_report(
        tmp_path / "r.html",
        title="t",
        summary={},
        description={},
        errors=[ErrorSection("s", [ErrorCase(Thumb(photo), Thumb(photo, Box(60, 60, 190, 190)), None, "c")])],
        thumb_size=size,
    )
    doc = parse_report(out.read_text(encoding="utf-8"))
    assert [decode_data_uri(i["src"])[1].size for i in doc.imgs] == [(size, size)] * 2
