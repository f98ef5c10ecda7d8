"""The HTML report and the hardest-error selection, on synthetic images made here (no
face photos: those belong to third parties and are never committed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from faceprint.evaluation import report, thumbnails
from faceprint.evaluation.metrics import NO_FACE_SCORE
from faceprint.evaluation.report import ErrorCase, ErrorSection, Figure, Thumb, hardest_errors, write_report
from faceprint.types import Box
from html_check import decode_data_uri, parse_report

# ------------------------------------------------------------------ hardest_errors


def test_hardest_errors_orders_each_kind_hardest_first() -> None:
    s = [0.95, 0.10, 0.70, 0.30, 0.99, 0.55, 0.62, 0.20]
    y = [False, True, False, True, False, True, True, False]
    fa, fr = hardest_errors(s, y, threshold=0.6)
    assert fa == [4, 0, 2]  # impostors at/above 0.6, highest first
    assert fr == [1, 3, 5]  # genuines below 0.6, lowest first; 6 (0.62) is accepted


def test_hardest_errors_threshold_is_inclusive_and_ties_keep_input_order() -> None:
    s = [0.6, 0.8, 0.8, 0.5, 0.5, 0.6]
    y = [False, False, False, True, True, True]
    fa, fr = hardest_errors(s, y, threshold=0.6)
    assert fa == [1, 2, 0]  # 0.6 >= 0.6 is an accept, so index 0 is a false accept
    assert fr == [3, 4]  # index 5 scores exactly the threshold: accepted


def test_hardest_errors_no_errors_and_fewer_than_n() -> None:
    assert hardest_errors([0.9, 0.1], [True, False], 0.5) == ([], [])
    assert hardest_errors([], [], 0.5) == ([], [])
    fa, _ = hardest_errors(np.linspace(0, 1, 11), np.zeros(11, bool), 0.75, n=20)
    assert fa == [10, 9, 8]
    fa, _ = hardest_errors(np.linspace(0, 1, 11), np.zeros(11, bool), 0.0, n=4)
    assert fa == [10, 9, 8, 7]
    assert hardest_errors([0.9], [False], 0.5, n=0) == ([], [])


def test_missing_faces_are_false_rejects_listed_after_scored_ones() -> None:
    s = [NO_FACE_SCORE, 0.3, NO_FACE_SCORE, 0.1, float("nan"), NO_FACE_SCORE]
    y = [True, True, True, True, True, False]
    _, fr = hardest_errors(s, y, threshold=0.5)
    assert fr == [3, 1, 0, 2, 4]
    # even a threshold below the sentinel never accepts a pair without a face
    fa, fr = hardest_errors(s, y, threshold=-5.0)
    assert fa == [] and fr == [0, 2, 4]
    _, fr = hardest_errors(s, y, threshold=0.5, n=3)
    assert fr == [3, 1, 0]


def test_hardest_errors_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="one length"):
        hardest_errors([0.1, 0.2], [True], 0.5)
    with pytest.raises(ValueError, match="finite"):
        hardest_errors([0.1], [True], float("nan"))
    with pytest.raises(ValueError, match="n must"):
        hardest_errors([0.1], [True], 0.5, n=-1)


# ------------------------------------------------------------------ thumbnails


def _photo(path: Path, w: int = 200, h: int = 160) -> Path:
    """A synthetic colour photo: red left half, blue right half."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (220, 30, 30)
    a[:, w // 2 :] = (30, 30, 220)
    PILImage.fromarray(a).save(path)
    return path


def test_crop_is_square_with_margin_and_grey_outside_the_photo() -> None:
    img = np.full((100, 100, 3), 200, np.uint8)
    t = thumbnails.crop_thumbnail(img, Box(0, 0, 40, 40), 64)
    assert t.shape == (64, 64, 3) and t.dtype == np.uint8
    # the box is grown by 25% each side (60 px square from -10): the top-left 1/6 is off the photo
    assert (t[:8, :8] == 128).all() and (t[40:, 40:] == 200).all()
    whole = thumbnails.crop_thumbnail(np.zeros((50, 80, 3), np.uint8), None, 32)
    assert whole.shape == (32, 32, 3) and (whole == 0).all()
    # a bogus huge box must not allocate its own size
    big = thumbnails.crop_thumbnail(img, Box(-1e7, -1e7, 1e7, 1e7), 32)
    assert big.shape == (32, 32, 3)
    with pytest.raises(ValueError, match="outside"):
        thumbnails.crop_thumbnail(img, Box(500, 500, 600, 600), 32)
    with pytest.raises(ValueError, match="invalid"):
        thumbnails.crop_thumbnail(img, Box(10, 10, 10, 50), 32)


def test_each_photo_is_decoded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import faceprint.io

    calls: list[str] = []
    real = faceprint.io.load_image

    def counting(src: object, max_pixels: int | None = None) -> object:
        calls.append(str(src))
        return real(src, max_pixels)  # type: ignore[arg-type]

    monkeypatch.setattr(faceprint.io, "load_image", counting)
    a, b = _photo(tmp_path / "a.png"), _photo(tmp_path / "b.png")
    thumbs = [Thumb(a, Box(10, 10, 60, 60)), Thumb(b), Thumb(a, Box(100, 20, 150, 80)), Thumb(a)]
    uris = thumbnails.render_thumbnails(thumbs * 3, 48)
    assert sorted(calls) == sorted([str(a.absolute()), str(b.absolute())])
    assert len(uris) == 4 and all(u.startswith("data:image/jpeg;base64,") for u in uris.values())


# ------------------------------------------------------------------ the HTML


def _png() -> bytes:
    import io

    buf = io.BytesIO()
    PILImage.new("RGB", (40, 30), (0, 128, 255)).save(buf, format="PNG")
    return buf.getvalue()


def test_report_escapes_text_and_shows_placeholders(tmp_path: Path) -> None:
    a = _photo(tmp_path / "a.png")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    evil = '<b>&"x"</b> Zoë'
    cases = [
        ErrorCase(Thumb(a, Box(20, 20, 80, 90), evil), Thumb(tmp_path / "gone.jpg"), 0.97, f"{evil} vs gone"),
        ErrorCase(Thumb(broken, label="broken"), None, NO_FACE_SCORE, "no face"),
    ]
    out = write_report(
        tmp_path / "deep" / "er" / "report.html",
        title=f"Report {evil}",
        summary={"accuracy": 0.991234, "far": 1.2e-5, "auc": None, "n": 12, evil: {"nested": 0.5}},
        description={"dataset": evil, "command": "faceprint eval lfw \\\n  --root x"},
        figures=[Figure(f"ROC {evil}", _png()), Figure("bad", b"GIF89a...")],
        errors=[ErrorSection(f"False accepts {evil}", cases, note=evil), ErrorSection("False rejects", [])],
    )
    text = out.read_text(encoding="utf-8")
    doc = parse_report(text)
    assert doc.doctype.lower() == "doctype html" and doc.charset == "utf-8"
    assert doc.external == []
    assert "<b>&" not in text and "&lt;b&gt;&amp;&quot;x&quot;&lt;/b&gt; Zoë" in text
    assert doc.text.count(evil) >= 6  # title, h1, summary key, description, caption, section, ...
    assert "0.9912" in text and "1.2e-05" in text and "n/a" in text
    kinds = [decode_data_uri(i["src"])[0] for i in doc.imgs]
    assert sorted(kinds) == ["image/jpeg", "image/png"]
    assert len(doc.placeholders) == 3  # a missing file, an undecodable one, a non-PNG figure
    assert any("no such file" in p for p in doc.placeholders)
    assert any("not a recognised image format" in p for p in doc.placeholders)
    assert "No errors of this kind." in doc.text and "no face found" in doc.text
    assert not list(out.parent.glob(".*tmp")), "temporary file left behind"


def test_summary_tables_from_nested_dicts_and_lists(tmp_path: Path) -> None:
    html_text = report.render_report(
        title="t",
        summary={
            "folds": [{"fold": 1, "accuracy": 0.5}, {"fold": 2, "accuracy": 0.75, "extra": True}],
            "per_fold": (0.1, 0.25),
            "arr": np.array([1, 2]),
            "np": np.float32(0.125),
            "nan": float("nan"),
            "empty": {},
        },
        description={},
    )
    doc = parse_report(html_text)
    assert doc.imgs == [] and doc.external == []
    assert "<th>fold</th><th>accuracy</th><th>extra</th>" in html_text
    assert "0.7500" in html_text and "yes" in html_text and "0.1000, 0.2500" in html_text
    assert "1, 2" in html_text and "0.1250" in html_text
    with pytest.raises(ValueError, match="thumb_size"):
        report.render_report(title="t", summary={}, description={}, thumb_size=4)
