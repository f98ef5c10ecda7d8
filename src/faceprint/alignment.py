"""Face alignment: map 5 landmarks onto an embedder's template and warp the crop.

An :class:`AlignmentTemplate` says where the 5 landmarks of one *scheme* (``"std5"`` or
``"dlib5"``, see :mod:`faceprint.types`) must land in the embedder's square crop. The
similarity transform (rotation, uniform scale, translation) is fitted by least squares
with Umeyama's method, exactly as dlib's ``find_similarity_transform`` does.

Two sampling methods:

* ``"dlib"`` reproduces ``dlib.get_face_chip`` bit for bit in geometry: dlib turns the
  fitted transform into a rotated rectangle (``chip_details``) and maps its corners onto
  the chip's corner *pixels* ``(0, 0)``, ``(cols-1, 0)``, ``(0, rows-1)``; samples
  bilinearly, with black outside the image; truncates to uint8 rather than rounding; and
  shrinks the source with a 2x image pyramid first when the crop is more than 2x
  smaller than its source region. The dlib ResNet was trained on such chips.
* ``"similarity"`` is the plain warp most other embedders (ArcFace-style) expect.

All coordinates are x,y float pixels with pixel centres at integers; images are RGB uint8.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from .errors import AlignmentError
from .types import Face, Image, Landmarks

Matrix = NDArray[np.float64]  # 2x3 affine, maps source (x, y, 1) to destination


@dataclass(frozen=True)
class AlignmentTemplate:
    """Where 5 landmarks of ``scheme`` go in a ``size`` x ``size`` crop (x,y pixels)."""

    scheme: str
    points: tuple[tuple[float, float], ...]
    size: int
    method: Literal["dlib", "similarity"] = "similarity"

    def array(self) -> NDArray[np.float64]:
        return np.asarray(self.points, dtype=np.float64)

    def zoomed(self, zoom: float) -> AlignmentTemplate:
        """The same template with the landmarks spread ``zoom`` times as far from the crop's
        centre: above 1 the face fills more of the crop (a tighter crop), below 1 less."""
        c = self.size / 2.0
        pts = tuple((c + (x - c) * zoom, c + (y - c) * zoom) for x, y in self.points)
        return AlignmentTemplate(self.scheme, pts, self.size, self.method)


#: dlib's 5-point face template on the unit square (``get_face_chip_details`` in dlib's
#: ``image_transforms/interpolation.h``), in the dlib5 landmark order.
DLIB5_UNIT = (
    (0.8595674595992, 0.2134981538014),
    (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848),
    (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
)


def dlib_template(size: int = 150, padding: float = 0.25) -> AlignmentTemplate:
    """dlib's chip template for ``get_face_chip(img, shape, size, padding)``."""
    pts = tuple(
        ((padding + x) / (2 * padding + 1) * size, (padding + y) / (2 * padding + 1) * size)
        for x, y in DLIB5_UNIT
    )
    return AlignmentTemplate("dlib5", pts, size, "dlib")


def similarity_transform(src: NDArray[np.float64], dst: NDArray[np.float64]) -> Matrix:
    """Least-squares similarity transform mapping ``src`` points onto ``dst`` (Umeyama 1991).

    Returns the 2x3 matrix ``[sR | t]``. Raises :class:`AlignmentError` for degenerate input
    (fewer than 2 points, all points coincident, or non-finite values).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise AlignmentError(f"expected two (N>=2, 2) point sets, got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise AlignmentError("landmarks contain NaN or infinite values")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    var_s = (sc**2).sum() / len(src)
    if var_s < 1e-12:
        raise AlignmentError("landmarks are degenerate (all points coincide)")
    cov = dc.T @ sc / len(src)
    u, d, vt = np.linalg.svd(cov)
    s = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s[1, 1] = -1
    r = u @ s @ vt
    scale = float(np.trace(np.diag(d) @ s) / var_s)
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]])


def _affine_from_3(src: NDArray[np.float64], dst: NDArray[np.float64]) -> Matrix:
    a = np.hstack([src, np.ones((3, 1))])
    sol = np.linalg.solve(a, dst)  # (3, 2)
    return np.asarray(sol.T, dtype=np.float64)


def _rotate(center: NDArray[np.float64], p: NDArray[np.float64], angle: float) -> NDArray[np.float64]:
    c, s = math.cos(angle), math.sin(angle)
    d = p - center
    return np.array([c * d[0] - s * d[1], s * d[0] + c * d[1]]) + center


def _rect_down(r: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """dlib's ``pyramid_down<2>::rect_down``: maps (l, t, r, b) one level down."""
    return (r[0] / 2 - 1.25, r[1] / 2 - 0.75, r[2] / 2 - 1.25, r[3] / 2 - 0.75)


def _area(r: tuple[float, float, float, float]) -> float:
    w, h = r[2] - r[0] + 1, r[3] - r[1] + 1  # dlib drectangle width/height include both ends
    return max(w, 0.0) * max(h, 0.0)


def _pyr_down(img: Image) -> Image:
    """dlib's ``pyramid_down<2>`` on RGB: 5-tap [1 4 6 4 1] filter, keep every 2nd pixel.

    Output pixel ``i`` averages input pixels ``2i .. 2i+4``; the result is truncated, not
    rounded, and is ``(n - 3) // 2`` pixels on each side, as in dlib.
    """
    a = img.astype(np.uint32)
    nr, nc = a.shape[:2]
    oc, orr = (nc - 3) // 2, (nr - 3) // 2
    w = (1, 4, 6, 4, 1)
    t = np.zeros((nr, oc, a.shape[2]), np.uint32)
    for i, k in enumerate(w):
        t += k * a[:, i : i + 2 * oc : 2]
    d = np.zeros((orr, oc, a.shape[2]), np.uint32)
    for i, k in enumerate(w):
        d += k * t[i : i + 2 * orr : 2]
    return np.asarray(d // 256, dtype=np.uint8)


def _corner_map(rect: tuple[float, float, float, float], angle: float, size: int) -> Matrix:
    """Affine chip pixel -> source pixel that sends the chip's corner pixels to ``rect``'s
    corners rotated by ``angle`` about its centre (dlib's ``extract_image_chips``)."""
    left, top, right, bottom = rect
    centre = np.array([(left + right) / 2, (top + bottom) / 2])
    corners = [np.array(c) for c in ((left, top), (right, top), (left, bottom))]
    img_pts = np.stack([_rotate(centre, c, angle) for c in corners])
    chip_pts = np.array([[0.0, 0.0], [size - 1.0, 0.0], [0.0, size - 1.0]])
    return _affine_from_3(chip_pts, img_pts)


def _dlib_chip_rect(
    points: NDArray[np.float64], tpl: AlignmentTemplate
) -> tuple[tuple[float, float, float, float], float]:
    """dlib's ``chip_details(chip_points, img_points, dims)``: (rect, angle)."""
    size = tpl.size
    m = similarity_transform(tpl.array(), points)  # chip -> image
    angle = math.atan2(m[1, 0], m[0, 0])
    scale = math.hypot(m[0, 0], m[1, 0])
    cx, cy = m @ np.array([size / 2.0, size / 2.0, 1.0])
    half = (size * scale - 1.0) / 2  # dlib's centered_drect subtracts one from the width
    return (cx - half, cy - half, cx + half, cy + half), angle


def _dlib_chip(image: Image, points: NDArray[np.float64], tpl: AlignmentTemplate) -> Image:
    size = tpl.size
    rect, angle = _dlib_chip_rect(points, tpl)
    chip_area = float(size * size)
    depth, grow = 0, 2.0
    r = _rect_down(rect)
    while _area(r) > chip_area:
        r = _rect_down(r)
        depth += 1
        grow = grow * 2 + 2
    if depth == 0:
        return _warp(image, _corner_map(rect, angle, size), size, True)
    # Pyramid path: crop the grown, rotated chip region, then shrink it level by level.
    h, w = image.shape[:2]
    centre = np.array([(rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2])
    rot = np.stack(
        [
            _rotate(centre, np.array(c), angle)
            for c in ((rect[0], rect[1]), (rect[2], rect[1]), (rect[0], rect[3]), (rect[2], rect[3]))
        ]
    )
    bl = max(round(rot[:, 0].min() - grow), 0)
    bt = max(round(rot[:, 1].min() - grow), 0)
    br = min(round(rot[:, 0].max() + grow), w - 1)
    bb = min(round(rot[:, 1].max() + grow), h - 1)
    src = image[bt : bb + 1, bl : br + 1]
    local = (rect[0] - bl, rect[1] - bt, rect[2] - bl, rect[3] - bt)
    level = -1
    while _area(_rect_down(local)) > chip_area:
        level += 1
        local = _rect_down(local)
    for _ in range(level + 1):
        if min(src.shape[:2]) <= 8:
            break
        src = _pyr_down(src)
    return _warp(src, _corner_map(local, angle, size), size, True)


def _warp(image: Image, chip_to_img: Matrix, size: int, truncate: bool) -> Image:
    """Bilinear warp; with ``truncate`` (dlib mode) the result is floored, and chip pixels
    whose 2x2 source neighbourhood leaves the image are black, as in dlib."""
    import cv2

    h, w = image.shape[:2]
    m = chip_to_img
    if truncate:
        # Only the region under the chip is converted to float: copying a whole 6 MP photo
        # per face made alignment cost more than the network. Every chip pixel samples
        # inside the bounding box of the chip's corners, so a 2 px margin keeps the
        # bilinear neighbours and the result identical.
        corners = np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1]], float)
        src_pts = corners @ m.T
        x0 = int(np.clip(np.floor(src_pts[:, 0].min()) - 2, 0, w))
        y0 = int(np.clip(np.floor(src_pts[:, 1].min()) - 2, 0, h))
        x1 = int(np.clip(np.ceil(src_pts[:, 0].max()) + 3, x0, w))
        y1 = int(np.clip(np.ceil(src_pts[:, 1].max()) + 3, y0, h))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return np.zeros((size, size, 3), np.uint8)  # the chip lies wholly outside the image
        src: NDArray[np.float32] | Image = image[y0:y1, x0:x1].astype(np.float32)
        m = m.copy()
        m[:, 2] -= (x0, y0)
    else:
        src = image
    out = cv2.warpAffine(
        src,
        m,
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    if not truncate:
        return np.asarray(out, dtype=np.uint8)
    res = np.floor(np.clip(out, 0, 255)).astype(np.uint8)
    # A chip pixel is black when its 2x2 source neighbourhood leaves the image. Its source
    # points are an affine image of the chip's square, so they lie within the hull of the
    # four corners' points: when every corner is inside (0 <= x < w-1, 0 <= y < h-1; floor
    # is monotonic), every pixel is, and the per-pixel test can be skipped (most faces).
    c = (
        np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1]], float)
        @ chip_to_img.T
    )
    if (c[:, 0] >= 0).all() and (c[:, 1] >= 0).all() and (c[:, 0] < w - 1).all() and (c[:, 1] < h - 1).all():
        return res
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    sx = np.floor(chip_to_img[0, 0] * xs + chip_to_img[0, 1] * ys + chip_to_img[0, 2])
    sy = np.floor(chip_to_img[1, 0] * xs + chip_to_img[1, 1] * ys + chip_to_img[1, 2])
    inside = (sx >= 0) & (sy >= 0) & (sx + 1 < w) & (sy + 1 < h)
    res[~inside] = 0
    return res


def align(image: Image, landmarks: Landmarks, template: AlignmentTemplate) -> Image:
    """The ``template.size`` square RGB crop of ``image`` with ``landmarks`` on the template.

    ``landmarks`` are (5, 2) x,y pixels in ``template.scheme`` order.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (5, 2):
        raise AlignmentError(f"expected (5, 2) landmarks, got shape {pts.shape}")
    if template.method == "similarity":
        return _warp(image, similarity_transform(template.array(), pts), template.size, False)
    return _dlib_chip(image, pts, template)


def align_face(image: Image, face: Face, templates: dict[str, AlignmentTemplate]) -> Image:
    """Crop ``face`` using the template of its landmark scheme.

    Raises :class:`AlignmentError` when the face has no landmarks or the embedder has no
    template for its scheme.
    """
    if face.landmarks is None:
        raise AlignmentError("face has no landmarks: use a detector that gives 5 landmarks")
    tpl = templates.get(face.landmark_scheme)
    if tpl is None:
        raise AlignmentError(
            f"no alignment template for landmark scheme {face.landmark_scheme!r}: "
            f"expected one of {', '.join(sorted(templates))}"
        )
    return align(image, face.landmarks, tpl)


def align_crops(
    image: Image, face: Face, crop_templates: Sequence[dict[str, AlignmentTemplate]], zoom: float = 1.0
) -> list[Image]:
    """The crops an embedder takes of ``face`` (its ``crop_templates``: one crop per entry,
    in order; one for a plain embedder, one per part for a fused one), every one cut from
    the same landmarks. ``zoom`` spreads each template's points about its crop's centre
    (:meth:`AlignmentTemplate.zoomed`; 1 = as fitted)."""
    out = []
    for templates in crop_templates:
        if zoom != 1.0:
            templates = {k: t.zoomed(zoom) for k, t in templates.items()}
        out.append(align_face(image, face, templates))
    return out


def fit_template(
    points_in_chip: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Mean landmark positions, given per-face (N, 5, 2) landmarks already in chip pixels.

    Used to fit a ``std5`` template for an embedder whose reference chips are defined by
    another scheme: map each face's std5 landmarks into its reference chip, then average.
    """
    pts = np.asarray(points_in_chip, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (5, 2) or len(pts) == 0:
        raise AlignmentError(f"expected (N, 5, 2) points, got {pts.shape}")
    return np.asarray(np.median(pts, axis=0), dtype=np.float64)


def image_to_chip(
    points: NDArray[np.float64], landmarks: Landmarks, template: AlignmentTemplate
) -> NDArray[np.float64]:
    """Map image-pixel ``points`` (N, 2) into the chip that ``landmarks`` define on ``template``."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if template.method == "dlib":
        rect, angle = _dlib_chip_rect(pts, template)
        m = _corner_map(rect, angle, template.size)
    else:
        m = similarity_transform(template.array(), pts)
    full = np.vstack([m, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(full)[:2]
    p = np.asarray(points, dtype=np.float64)
    return np.asarray(p @ inv[:, :2].T + inv[:, 2], dtype=np.float64)
