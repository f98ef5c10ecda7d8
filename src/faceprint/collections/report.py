"""The clusters as one self-contained HTML page: a strip of face thumbnails per cluster.

Why a page: checking that a cluster is one person is done by eye, and the ids under the
thumbnails are what ``faceprint cluster name/merge/split/remove-face`` take. Thumbnails
are cut from the photos on the fly and live only inside the page (data URIs): the
collection never stores a face image. The page loads nothing from the network and runs
no script. Clusters are largest first; each strip shows at most ``per_cluster`` faces.
"""

from __future__ import annotations

import html
from pathlib import Path

from ..evaluation.thumbnails import Thumb, render_thumbnails, thumb_key
from ..files import atomic_write
from .collection import ClusterView

THUMB = 96
PER_CLUSTER = 24
#: Faces shown in the "not clustered" and "below the quality gate" strips.
LOOSE = 48

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#222;background:#fafafa}
h1{font-size:1.4rem}h2{font-size:1.05rem;margin:1.2rem 0 .4rem}
.strip{display:flex;flex-wrap:wrap;gap:6px}
figure{margin:0;width:96px;text-align:center;font-size:11px;color:#555}
img,.ph{width:96px;height:96px;border-radius:4px;display:block;background:#ccc}
.meta{color:#666;font-weight:normal}.prop{color:#8a5a00}
"""


def write_report(view: ClusterView, path: Path, *, per_cluster: int = PER_CLUSTER, title: str = "") -> Path:
    """Write the page for ``view`` at ``path`` (atomically); returns ``path``."""
    f = view.faces
    row = {int(x): i for i, x in enumerate(f.ids.tolist())}
    paths = view.paths

    def thumb(fid: int) -> Thumb | None:
        i = row[fid]
        ps = paths.get(f.image_sha256[i])
        return Thumb(ps[0], f.boxes[i], str(fid)) if ps else None

    shown: list[tuple[str, list[int], int]] = []
    for c in view.clusters:
        head = f"Cluster {c.id}"
        meta = f"{c.size} face{'s' if c.size != 1 else ''}"
        if c.person:
            head += f" · {html.escape(c.person)}"
        elif c.proposed is not None:
            meta += (
                f' · <span class="prop">looks like enrolled {html.escape(c.proposed.identity)} '
                f"({c.proposed.similarity:.3f}); faceprint cluster name {c.id} … --merge</span>"
            )
        shown.append((f'{head} <span class="meta">{meta}</span>', list(c.faces[:per_cluster]), c.size))
    loose = [
        int(x)
        for x, c, r in zip(f.ids.tolist(), f.clusters.tolist(), f.rejected, strict=True)
        if c < 0 and r is None
    ]
    low = [int(x) for x, r in zip(f.ids.tolist(), f.rejected, strict=True) if r is not None]
    shown.append(
        (
            f'Not clustered <span class="meta">{len(loose)} faces that matched nobody</span>',
            loose[:LOOSE],
            len(loose),
        )
    )
    shown.append(
        (
            f'Below the quality gate <span class="meta">{len(low)} faces, never clustered</span>',
            low[:LOOSE],
            len(low),
        )
    )

    thumbs = {fid: t for _, ids, _ in shown for fid in ids if (t := thumb(fid)) is not None}
    uris = render_thumbnails(thumbs.values(), THUMB)
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name=viewport content="width=device-width,initial-scale=1">',
        "<meta http-equiv=Content-Security-Policy "
        "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        f"<title>{html.escape(title or 'faceprint clusters')}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title or 'faceprint clusters')}</h1>",
        f"<p>{len(view.clusters)} clusters, {len(f.ids)} faces"
        + (f", average-linkage threshold {view.threshold:.3f}" if view.threshold is not None else "")
        + ". The number under each face is its id (faceprint cluster remove-face ID).</p>",
    ]
    for head, ids, total in shown:
        parts.append(f"<section><h2>{head}</h2><div class=strip>")
        for fid in ids:
            t = thumbs.get(fid)
            uri = uris.get(thumb_key(t)) if t is not None else "!no photo on record"
            label = html.escape(str(fid))
            if uri is None or uri.startswith("!"):
                why = html.escape((uri or "!missing")[1:])
                parts.append(f'<figure><div class=ph title="{why}"></div>{label}</figure>')
            else:
                tip = html.escape(str(t.image) if t else "")
                parts.append(f'<figure><img src="{uri}" alt="face {label}" title="{tip}">{label}</figure>')
        if total > len(ids):
            parts.append(f"<figure>… and {total - len(ids)} more</figure>")
        parts.append("</div></section>")
    parts.append("</body></html>\n")
    data = "".join(parts).encode("utf-8")
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return path
