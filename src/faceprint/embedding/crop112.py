"""The 112x112 five-point crop most face embedders since ArcFace were trained on, for the
``mobilefacenet`` and ``faceplugin`` embedders.

``std5`` landmarks (viewer's left eye, right eye, nose tip, left and right mouth corner;
YuNet, SCRFD, MTCNN) go to the standard template points below, with a plain similarity
warp (bilinear, black outside the image). HOG's ``dlib5`` landmarks (two corners of each
eye and the bottom of the nose) mark other points, so their template is derived: the
similarity transform that best carries the ``std5`` points of dlib's 150x150 chip
(:data:`faceprint.embedding.dlib.STD5_TEMPLATE_150`, fitted on LFW) onto the 112 template
also carries dlib's own five chip points onto where ``dlib5`` landmarks fall in the 112
crop, with no new fit.
"""

from __future__ import annotations

import numpy as np

from ..alignment import AlignmentTemplate, dlib_template, similarity_transform
from .dlib import STD5_TEMPLATE_150

#: Where the ``std5`` points go in the standard 112x112 crop (x, y pixels).
STD5_112: tuple[tuple[float, float], ...] = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)
SIZE = 112


def _dlib5_points() -> tuple[tuple[float, float], ...]:
    """dlib's chip points carried into the 112 crop (module doc)."""
    # similarity_transform(src, dst) maps src onto dst: here dlib-chip std5 onto 112 std5.
    m = similarity_transform(np.asarray(STD5_TEMPLATE_150, np.float64), np.asarray(STD5_112, np.float64))
    pts = dlib_template(150, 0.25).array() @ m[:, :2].T + m[:, 2]
    return tuple((float(x), float(y)) for x, y in pts)


def templates(zoom: float = 1.0) -> dict[str, AlignmentTemplate]:
    """The 112x112 crop's templates (``std5`` and ``dlib5``), with the points spread
    ``zoom`` times about the centre (below 1: more of the head in the crop)."""
    return {
        "std5": AlignmentTemplate("std5", STD5_112, SIZE).zoomed(zoom),
        "dlib5": AlignmentTemplate("dlib5", _dlib5_points(), SIZE).zoomed(zoom),
    }
