import math

import numpy as np
import pytest

from faceprint.alignment import AlignmentTemplate, align, dlib_template, image_to_chip, similarity_transform
from faceprint.errors import AlignmentError


def test_umeyama_recovers_a_known_similarity() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (5, 2))
    ang, s, t = 0.3, 1.7, np.array([12.0, -4.0])
    r = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    dst = s * src @ r.T + t
    m = similarity_transform(src, dst)
    assert np.allclose(m[:, :2], s * r, atol=1e-9) and np.allclose(m[:, 2], t, atol=1e-9)


def test_degenerate_landmarks_are_refused() -> None:
    with pytest.raises(AlignmentError, match="degenerate"):
        similarity_transform(np.ones((5, 2)), np.zeros((5, 2)))
    with pytest.raises(AlignmentError, match="NaN"):
        similarity_transform(np.full((5, 2), np.nan), np.zeros((5, 2)))
    tpl = dlib_template()
    with pytest.raises(AlignmentError, match=r"\(5, 2\)"):
        align(np.zeros((50, 50, 3), np.uint8), np.zeros((4, 2), np.float32), tpl)


@pytest.mark.parametrize("method", ["similarity", "dlib"])
def test_landmarks_land_on_the_template(method: str) -> None:
    """Draw dots where landmarks are, warp, and find the dots at the template points."""
    tpl_pts = ((40.0, 50.0), (110.0, 50.0), (75.0, 85.0), (48.0, 115.0), (102.0, 115.0))
    ang, s = 0.2, 0.8  # the face in the image: the template rotated, shrunk and moved
    r = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    pts = np.round(s * np.array(tpl_pts) @ r.T + [50.0, 40.0])
    img = np.zeros((240, 200, 3), np.uint8)
    for x, y in pts:
        img[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 255
    tpl = AlignmentTemplate("std5", tpl_pts, 150, method)  # type: ignore[arg-type]
    crop = align(img, pts.astype(np.float32), tpl)
    assert crop.shape == (150, 150, 3)
    mapped = image_to_chip(pts, pts.astype(np.float32), tpl)
    for (x, y), (mx, my) in zip(tpl_pts, mapped, strict=True):
        assert abs(x - mx) < 1.5 and abs(y - my) < 1.5  # landmarks map onto the template
        patch = crop[round(y) - 3 : round(y) + 4, round(x) - 3 : round(x) + 4]
        assert patch.max() > 100  # and the bright dot is really there


def test_zoomed_template_spreads_the_landmarks_about_the_crop_centre() -> None:
    t = dlib_template(150)
    assert t.zoomed(1.0) == t
    z = t.zoomed(1.07)
    c = np.array([75.0, 75.0])
    np.testing.assert_allclose(z.array() - c, (t.array() - c) * 1.07)
    assert (z.scheme, z.size, z.method) == (t.scheme, t.size, t.method)
    spread = np.linalg.norm(t.zoomed(0.93).array() - c, axis=1)
    assert np.all(spread < np.linalg.norm(t.array() - c, axis=1))
