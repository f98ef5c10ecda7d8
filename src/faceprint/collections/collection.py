"""A photo collection on a gallery: index photos, cluster their faces, name clusters,
correct them, and find a person's photos. The Python API the CLI mirrors.

Why on a gallery: naming a cluster enrols its faces as that person (so identification
knows them from then on), and enrolled people anchor clusters: a cluster whose centroid
matches an enrolled person at the gallery's open-set threshold is *proposed* as that
person, never merged silently.

Corrections are constraints kept across runs (:mod:`.store`'s ``photo_links``): a named
cluster's faces stay together and apart from every other named person, a merge is a
must-link, a split or a removed face a cannot-link. ``cluster()`` adds new faces to the
existing clusters (:func:`~.cluster.extend_clusters`: ids and names stay); ``recluster``
starts over under the same constraints, keeping named clusters' ids and, for the others,
the id that most of a new cluster's faces had before.

Conventions: similarities are cosine similarities of unit vectors; boxes xyxy pixels;
cluster ids are small integers, stable until a recluster; face ids are the integers the
collection gave each indexed face.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..errors import (
    GalleryError,
    InvalidArgumentError,
    NameTakenError,
    NoFaceError,
    UnknownClusterError,
    UnknownFaceError,
    UnknownPersonError,
)
from ..gallery.records import FaceRecord, check_name
from ..quality import DEFAULT_GATE, QualityGate
from ..types import Box, Match
from .cluster import cluster_faces, extend_clusters
from .indexer import IndexSummary, index_photos
from .store import CANNOT, MUST, CollectionStore, StoredFaces

if TYPE_CHECKING:
    from ..gallery.gallery import Gallery
    from ..io import ImageInput

#: Average-linkage threshold (cosine similarity) per model network@version, fitted on
#: LFW pairsDevTrain people by ``bench/clustering.py`` (BCubed F 0.946 on the held-out
#: pairsDevTest people). Other models need an explicit threshold.
CLUSTER_THRESHOLDS = {"dlib@resnet_v1": 0.94}
#: A "cluster" of one face is a face that matched nobody: reported as not clustered.
MIN_CLUSTER_SIZE = 2


def cluster_threshold(model: str) -> float:
    """The fitted clustering threshold of ``model`` (``network@version+sha8``)."""
    key = model.split("+", 1)[0] if not model.endswith("+flip") else model
    if key not in CLUSTER_THRESHOLDS:
        raise InvalidArgumentError(
            f"no clustering threshold is fitted for {model}; give one (--threshold, a cosine similarity)"
        )
    return CLUSTER_THRESHOLDS[key]


@dataclass(frozen=True)
class ClusterInfo:
    """One cluster: its id, its faces (ids, first = its representative), the person it
    is named as, and the enrolled person it is proposed as (not named yet)."""

    id: int
    faces: tuple[int, ...]
    person: str | None = None
    proposed: Match | None = None

    @property
    def size(self) -> int:
        return len(self.faces)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "size": self.size,
            "person": self.person,
            "proposed": None
            if self.proposed is None
            else {"person": self.proposed.identity, "similarity": round(self.proposed.similarity, 6)},
        }


@dataclass(frozen=True)
class ClusterView:
    """Every indexed face and the clusters, largest first."""

    faces: StoredFaces
    clusters: list[ClusterInfo]
    paths: dict[str, list[str]]
    threshold: float | None = None

    def face_dicts(self) -> list[dict[str, Any]]:
        out = []
        for i, fid in enumerate(self.faces.ids.tolist()):
            sha = self.faces.image_sha256[i]
            paths = self.paths.get(sha, [])
            c = int(self.faces.clusters[i])
            out.append(
                {
                    "face_id": fid,
                    "image": paths[0] if paths else None,
                    "images": paths,
                    "image_sha256": sha,
                    "box": _box(self.faces.boxes[i]),
                    "cluster": None if c < 0 else c,
                    "below_quality_gate": self.faces.rejected[i],
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        clustered = int((self.faces.clusters >= 0).sum())
        rejected = sum(r is not None for r in self.faces.rejected)
        return {
            "threshold": self.threshold,
            "faces": self.face_dicts(),
            "clusters": [c.to_dict() for c in self.clusters],
            "counts": {
                "faces": len(self.faces.ids),
                "clustered": clustered,
                "not_clustered": len(self.faces.ids) - clustered - rejected,
                "below_quality_gate": rejected,
                "clusters": len(self.clusters),
            },
        }


@dataclass(frozen=True)
class ClusterRun:
    """What one clustering run did."""

    mode: str  # "full" or "incremental"
    threshold: float
    clusters: int
    clustered: int
    new_faces: int
    not_clustered: int
    below_quality_gate: int
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class PhotoHit:
    """A face of an indexed photo that shows the person asked for: ``source`` is
    ``"named"`` (in a cluster named as them), ``"matched"`` (identified as them at the
    gallery's open-set threshold) or ``"similar"`` (like the query face at the 1:1
    threshold); ``similarity`` for the last two."""

    face_id: int
    images: tuple[str, ...]
    box: Box
    cluster: int | None
    source: str
    similarity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.images[0] if self.images else None,
            "images": list(self.images),
            "face_id": self.face_id,
            "box": _box(self.box),
            "cluster": self.cluster,
            "source": self.source,
            "similarity": None if self.similarity is None else round(self.similarity, 6),
        }


@dataclass
class _Known:
    """The stored state clustering and corrections work from."""

    faces: StoredFaces
    people: dict[int, str | None]  # cluster -> person uid
    names: dict[str, str] = field(default_factory=dict)  # person uid -> name (existing people)

    def members(self, cluster: int) -> list[int]:
        return [int(f) for f in self.faces.ids[self.faces.clusters == cluster]]


class Collection:
    """The photo collection of ``gallery`` (module doc)."""

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery
        self.store = CollectionStore(gallery.store)

    # -- indexing ----------------------------------------------------------------------------
    def index(
        self,
        paths: Iterable[str | Path],
        *,
        recursive: bool = False,
        workers: int = 1,
        gate: QualityGate = DEFAULT_GATE,
        progress: Callable[[int], None] | None = None,
        on_total: Callable[[int], None] | None = None,
        ray: str | None = None,
    ) -> IndexSummary:
        """Index the photos under ``paths`` (see :func:`~.indexer.index_photos`; ``ray``:
        ``"local"`` or a cluster address, :mod:`.distributed`)."""
        return index_photos(
            self.store,
            self.gallery.recognizer,
            paths,
            recursive=recursive,
            workers=workers,
            gate=gate,
            progress=progress,
            on_total=on_total,
            ray=ray,
        )  # fmt: skip

    def counts(self) -> dict[str, int]:
        return self.store.counts()

    def failures(self) -> list[tuple[str, str]]:
        return self.store.failures()

    # -- clustering --------------------------------------------------------------------------
    def _known(self) -> _Known:
        faces = self.store.faces()
        people = self.store.cluster_people()
        names = {p.id: p.name for p in self.gallery.people()}
        # a cluster named as a person removed from the gallery is unnamed again
        people = {c: (u if u in names else None) for c, u in people.items()}
        return _Known(faces, people, names)

    def threshold(self, threshold: float | None = None) -> float:
        if threshold is not None:
            if not -1.0 <= threshold <= 1.0:
                raise InvalidArgumentError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
            return float(threshold)
        model = self.store.model()
        if model is None:
            raise GalleryError(
                f"gallery {self.store.location}: no photos indexed yet; run faceprint index first"
            )
        return cluster_threshold(model)

    def cluster(self, threshold: float | None = None, *, recluster: bool = False) -> ClusterRun:
        """Cluster the indexed faces (module doc): new faces join the existing clusters, or
        with ``recluster`` (or when nothing is clustered yet) everything starts over under
        the user's constraints."""
        import time

        start = time.perf_counter()
        t = self.threshold(threshold)
        k = self._known()
        f = k.faces
        ok = np.asarray([r is None for r in f.rejected], bool)
        rows = np.flatnonzero(ok)
        pos = {int(fid): j for j, fid in enumerate(f.ids[rows].tolist())}
        labels_before = f.clusters[rows]
        full = recluster or not (labels_before >= 0).any()
        links = [(pos[a], pos[b], kind) for a, b, kind in self.store.links() if a in pos and b in pos]
        groups = [f.image_sha256[i] for i in rows]
        v = f.vectors[rows] if len(rows) else np.zeros((0, 1), np.float32)
        if len(rows) == 0:
            new = np.zeros(0, np.int64)
        elif full:
            new = self._full(v, groups, labels_before, k, links, t)
        else:
            cannot = [(a, b) for a, b, kind in links if kind == CANNOT]
            new = extend_clusters(
                v, labels_before, t, groups=groups, cannot_link=cannot, min_size=MIN_CLUSTER_SIZE
            )
            new = self._renumber_fresh(new, labels_before)
        # only the faces whose cluster changed are written (an incremental run moves few)
        assignment = {
            int(f.ids[r]): (None if new[j] < 0 else int(new[j]))
            for j, r in enumerate(rows.tolist())
            if new[j] != labels_before[j]
        }
        # faces below the gate are never in a cluster
        assignment.update({int(f.ids[i]): None for i in np.flatnonzero(~ok).tolist() if f.clusters[i] >= 0})
        people = {int(c): k.people.get(int(c)) for c in np.unique(new[new >= 0]).tolist()}
        self.store.save_clusters(assignment, people)
        return ClusterRun(
            mode="full" if full else "incremental",
            threshold=t,
            clusters=len(people),
            clustered=int((new >= 0).sum()),
            new_faces=int((labels_before < 0).sum()) if not full else len(rows),
            not_clustered=int((new < 0).sum()),
            below_quality_gate=int((~ok).sum()),
            seconds=time.perf_counter() - start,
        )

    def _full(
        self,
        v: NDArray[np.float32],
        groups: list[str],
        before: NDArray[np.int64],
        k: _Known,
        links: list[tuple[int, int, str]],
        t: float,
    ) -> NDArray[np.int64]:
        """Cluster from scratch; named clusters keep their id, others the id most of their
        faces had, new ones fresh ids."""
        must = [(a, b) for a, b, kind in links if kind == MUST]
        cannot = [(a, b) for a, b, kind in links if kind == CANNOT]
        by_person: dict[str, list[int]] = {}
        for j, c in enumerate(before.tolist()):
            uid = k.people.get(c) if c >= 0 else None
            if uid is not None:
                by_person.setdefault(uid, []).append(j)
        for rows in by_person.values():
            must.extend((rows[0], r) for r in rows[1:])
        reps = [rows[0] for rows in by_person.values()]
        labels = cluster_faces(
            v, t, groups=groups, must_link=must, cannot_link=cannot, apart=[reps], min_size=MIN_CLUSTER_SIZE
        )
        out = np.full(len(labels), -1, np.int64)
        used: set[int] = set()
        mapping: dict[int, int] = {}
        for rows in by_person.values():  # named clusters keep their id
            old = int(before[rows[0]])
            used.add(old)
            if labels[rows[0]] >= 0:
                mapping[int(labels[rows[0]])] = old
        fresh = self.store.next_cluster_id()
        for lab in np.unique(labels[labels >= 0]).tolist():  # labels are largest first
            if lab in mapping:
                continue
            prev = before[(labels == lab) & (before >= 0)]
            if len(prev):
                vals, counts = np.unique(prev, return_counts=True)
                best = int(vals[np.argmax(counts)])
                if best not in used and counts.max() * 2 > int((labels == lab).sum()):
                    mapping[lab] = best
                    used.add(best)
                    continue
            while fresh in used:
                fresh += 1
            mapping[lab] = fresh
            used.add(fresh)
        for lab, cid in mapping.items():
            out[labels == lab] = cid
        for rows in by_person.values():  # a named face left alone keeps its name
            if labels[rows[0]] < 0:
                out[rows] = before[rows[0]]
        return out

    def _renumber_fresh(self, new: NDArray[np.int64], before: NDArray[np.int64]) -> NDArray[np.int64]:
        """extend_clusters numbers new clusters after the largest label it saw; ids of
        clusters that no longer have faces may be larger: move new clusters past them."""
        base = self.store.next_cluster_id()
        existing = set(before[before >= 0].tolist())
        out = new.copy()
        fresh_labels = sorted(set(new[new >= 0].tolist()) - existing)
        start = max(base, max(existing, default=-1) + 1)
        for i, lab in enumerate(fresh_labels):
            out[new == lab] = start + i
        return out

    def view(self, propose: bool = True) -> ClusterView:
        """Every face and cluster as stored (clusters largest first; ties: lowest id), with
        proposals for unnamed clusters that match an enrolled person."""
        k = self._known()
        f = k.faces
        clusters = self._infos(k)
        if propose:
            clusters = self._propose(clusters, f)
        clusters.sort(key=lambda c: (-c.size, c.id))
        model = self.store.model()
        t = None
        if model is not None:
            try:
                t = cluster_threshold(model)
            except InvalidArgumentError:
                t = None
        return ClusterView(f, clusters, self.store.paths(), t)

    def _propose(
        self, clusters: list[ClusterInfo], f: StoredFaces, threshold: float | None = None
    ) -> list[ClusterInfo]:
        """Unnamed clusters most of whose faces are identified as one enrolled person at
        the gallery's open-set threshold get that person as a proposal (similarity: the
        mean over those faces). Faces, not the cluster's mean vector, are compared: a
        mean is closer to every other mean than single faces are, so a centroid would
        pass a threshold that was set for faces."""
        open_ = [c for c in clusters if c.person is None]
        if not open_ or self.gallery.store.count_people() == 0 or not self._same_model():
            return clusters
        row = {int(x): i for i, x in enumerate(f.ids.tolist())}
        t = self.gallery.operating_point().threshold if threshold is None else threshold
        flat = [row[x] for c in open_ for x in c.faces]
        ranked = self.gallery.rank(f.vectors[flat], 1)
        best: dict[int, Match | None] = {}
        k = 0
        for c in open_:
            votes: dict[str, list[float]] = {}
            for r in ranked[k : k + c.size]:
                if r and r[0].similarity >= t:
                    votes.setdefault(r[0].identity, []).append(r[0].similarity)
            k += c.size
            who = max(votes, key=lambda p: len(votes[p]), default=None)
            if who is not None and 2 * len(votes[who]) > c.size:
                best[c.id] = Match(who, float(np.mean(votes[who])), "")
        return [
            c if c.person is not None else ClusterInfo(c.id, c.faces, None, best.get(c.id)) for c in clusters
        ]

    def _same_model(self) -> bool:
        bound = self.gallery.store.model()
        return bound is not None and bound[0] == self.store.model()

    # -- naming and corrections ---------------------------------------------------------------
    def _members(self, cluster: int, k: _Known | None = None) -> tuple[_Known, list[int]]:
        k = k or self._known()
        members = k.members(int(cluster))
        if not members:
            raise UnknownClusterError(
                f"gallery {self.store.location}: no cluster {cluster} (faceprint cluster lists them)"
            )
        return k, members

    def name(self, cluster: int, name: str, *, merge: bool = False) -> tuple[str, int]:
        """Enrol ``cluster``'s faces as ``name`` (a new person, or with ``merge`` an existing
        one), in one transaction. Returns (name, faces enrolled)."""
        check_name(name)
        k, members = self._members(cluster)
        uid = k.people.get(int(cluster))
        if uid is not None:
            current = k.names[uid]
            if current == name:
                return name, 0
            raise GalleryError(
                f"cluster {cluster} is already named {current!r}; rename the person with "
                f"faceprint gallery rename, or split the cluster first"
            )
        try:
            person, _ = self.gallery.person(name)
        except UnknownPersonError:
            person = None
        if person is not None and not merge:
            raise NameTakenError(
                f"{name!r} is already enrolled ({person.faces} faces); add --merge to add cluster "
                f"{cluster}'s faces to them"
            )
        model = self.store.model()
        assert model is not None
        bound = self.gallery.store.model()
        if bound is not None and bound[0] != model:
            raise GalleryError(
                f"gallery {self.store.location}: its people were enrolled with {bound[0]}, its photos "
                f"indexed with {model}: a cluster cannot be enrolled"
            )
        f = k.faces
        row = {int(x): i for i, x in enumerate(f.ids.tolist())}
        records = [
            FaceRecord(
                face_id=uuid.uuid4().hex,
                person=name,
                vector=f.vectors[row[m]],
                model=model,
                image_sha256=f.image_sha256[row[m]],
                box=f.boxes[row[m]],
            )
            for m in members
        ]
        enrolled = {m: r.face_id for m, r in zip(members, records, strict=True)}
        if person is not None:
            for c in sorted(c for c, u in k.people.items() if u == person.id and c != int(cluster)):
                _check_apart(k, c, int(cluster))
        with self.store.db.transaction():
            added, _ = self.gallery.store.add_faces(name, records)
            done = {r.face_id for r in added}
            enrolled = {m: e for m, e in enrolled.items() if e in done}
            pid = self.gallery.store.person(name)[0].id
            other = sorted(c for c, u in k.people.items() if u == pid and c != int(cluster))
            if other:  # the person already has a cluster: this one joins it
                target = other[0]
                rep = k.members(target)[0]
                self.store.move_faces(members, target, [(rep, x, MUST) for x in members])
                self.store.set_person(target, pid, enrolled)
            else:
                self.store.set_person(int(cluster), pid, enrolled)
        return name, len(added)

    def merge(self, a: int, b: int) -> int:
        """Move cluster ``b``'s faces into ``a`` (a must-link kept across runs); returns
        ``a``'s new size. Two clusters named as different people are refused."""
        if int(a) == int(b):
            raise InvalidArgumentError(f"cannot merge cluster {a} with itself")
        k, ma = self._members(a)
        _, mb = self._members(b, k)
        ua, ub = k.people.get(int(a)), k.people.get(int(b))
        if ua is not None and ub is not None and ua != ub:
            raise GalleryError(
                f"clusters {a} ({k.names[ua]}) and {b} ({k.names[ub]}) are named as different people; "
                "merge the people with faceprint gallery, or rename one cluster first"
            )
        _check_apart(k, int(a), int(b))
        with self.store.db.transaction():
            # every face of both: the user looked at them and said one person
            self.store.move_faces(mb, int(a), [(ma[0], x, MUST) for x in [*ma[1:], *mb]])
            if ua is None and ub is not None:
                self.store.set_person(int(a), ub)
        return len(ma) + len(mb)

    def split(self, cluster: int, face_ids: Sequence[int]) -> int:
        """Move ``face_ids`` out of ``cluster`` into a new cluster, kept apart from the rest
        (cannot-links with each face that stays) and together (must-links); returns the
        new cluster's id. A named
        cluster keeps its name; the new one is unnamed."""
        _, members = self._members(cluster)
        part = list(dict.fromkeys(int(x) for x in face_ids))
        if not part:
            raise InvalidArgumentError("split: name at least one face of the cluster to move out (--face ID)")
        stray = [x for x in part if x not in set(members)]
        if stray:
            raise UnknownClusterError(f"split: face {stray[0]} is not in cluster {cluster}")
        rest = [x for x in members if x not in set(part)]
        if not rest:
            raise InvalidArgumentError(
                f"split: those are all of cluster {cluster}'s faces; nothing would stay"
            )
        new = self.store.next_cluster_id()
        # apart from every face that stays (one representative could leave the cluster
        # later and free the rest to merge back); together among themselves
        links = [*((r, part[0], CANNOT) for r in rest), *((part[0], x, MUST) for x in part[1:])]
        self.store.move_faces(part, new, links, unlink=True)
        return new

    def remove_face(self, face_id: int) -> int:
        """Take one face out of its cluster for good (cannot-links with its faces; if it
        was enrolled when the cluster was named, it leaves the person too). Returns the
        cluster it left."""
        found = self.store.face(int(face_id))
        if found is None:
            raise UnknownClusterError(f"gallery {self.store.location}: no indexed face {face_id}")
        cluster, _, enrolled = found
        if cluster is None:
            raise InvalidArgumentError(f"face {face_id} is not in a cluster")
        _, members = self._members(cluster)
        rest = [x for x in members if x != int(face_id)]
        with self.store.db.transaction():
            self.store.move_faces(
                [int(face_id)], None, [(r, int(face_id), CANNOT) for r in rest], unlink=True
            )
            if enrolled is not None:
                with contextlib.suppress(UnknownFaceError):  # removed from the gallery meanwhile
                    self.gallery.store.remove_face(enrolled)
                self.store.clear_enrolled(int(face_id))
        return int(cluster)

    # -- finding photos ----------------------------------------------------------------------
    def photos(self, name: str) -> list[PhotoHit]:
        """Every indexed face of ``name``: in a cluster named as them (``"named"``), in a
        cluster proposed as them (``"proposed"``: most of its faces are identified as them),
        or a face outside those identified as them at :meth:`search_threshold` for the
        faces searched (``"matched"``). Faces below the quality gate are never matched."""
        person, _ = self.gallery.person(name)
        k = self._known()
        f = k.faces
        paths = self.store.paths()
        mine = {c for c, u in k.people.items() if u == person.id}
        named_other = {c for c, u in k.people.items() if u is not None and u != person.id}
        if person.faces and self._same_model():
            loose = [c for c in self._infos(k) if c.person is None]
            # a list of photos is held to the whole-search threshold, not the per-face one
            # a suggestion to a user gets
            view = self._propose(loose, f, self.search_threshold(sum(c.size for c in loose)))
            proposed = {c.id for c in view if c.proposed is not None and c.proposed.identity == name}
        else:
            proposed = set()
        hits: list[PhotoHit] = []
        for i, c in enumerate(f.clusters.tolist()):
            if c in mine:
                hits.append(self._hit(f, i, paths, "named"))
            elif c in proposed:
                hits.append(self._hit(f, i, paths, "proposed"))
        cand = [
            i for i, c in enumerate(f.clusters.tolist())
            if c not in mine and c not in proposed and c not in named_other and f.rejected[i] is None
        ]  # fmt: skip
        if cand and person.faces and self._same_model():
            t = self.search_threshold(len(cand))
            ranked = self.gallery.rank(f.vectors[cand], 1)
            for i, r in zip(cand, ranked, strict=True):
                if r and r[0].identity == name and r[0].similarity >= t:
                    hits.append(self._hit(f, i, paths, "matched", r[0].similarity))
        return _by_image(hits)

    def search_threshold(self, faces: int) -> float:
        """The threshold at which a search of ``faces`` stranger faces names the person
        with the gallery's false-alarm rate in all (not per face): the open-set formula
        with K = the faces searched, never below the gallery's own threshold. Per face,
        1% of a 50,000-face collection would be 500 wrong photos."""
        from ..gallery.scoring import ImpostorDistribution, find_distribution, open_set_threshold

        op = self.gallery.operating_point()
        if op.far is None:
            return op.threshold
        cal = self.gallery.calibration()
        dist: ImpostorDistribution | None
        if cal is not None and "impostors" in cal:
            dist = ImpostorDistribution(cal["impostors"], f"gallery {self.store.location} calibration")
        else:
            dist = find_distribution(op.model)  # after operating_point(): a MODEL_DIR's is registered
        if dist is None:
            return op.threshold
        return max(op.threshold, open_set_threshold(dist, max(1, faces), op.far))

    @staticmethod
    def _infos(k: _Known) -> list[ClusterInfo]:
        f = k.faces
        out = []
        for cid in np.unique(f.clusters[f.clusters >= 0]).tolist():
            uid = k.people.get(int(cid))
            members = tuple(int(x) for x in f.ids[f.clusters == cid])
            out.append(ClusterInfo(int(cid), members, k.names.get(uid) if uid else None))
        return out

    def photos_like(self, image: ImageInput) -> list[PhotoHit]:
        """Every indexed face like the largest face of ``image``, most similar first, at the
        recognizer's 1:1 threshold or, when higher, :meth:`search_threshold` for the faces
        searched (1:1 at a 1% false-accept rate over 6,000 faces lists about 60 strangers)."""
        from ..selection import largest_face

        rec = self.gallery.recognizer
        model = self.store.model()
        if model is not None and model != rec.model_id:
            raise GalleryError(
                f"gallery {self.store.location}: its photos were indexed with {model}, not {rec.model_id}"
            )
        face = largest_face(rec.process(image))
        if face is None or face.embedding is None:
            raise NoFaceError(
                f"{image if isinstance(image, str | Path) else 'the query image'}: no face found"
            )
        f = self.store.faces()
        if len(f.ids) == 0:
            return []
        sims = f.vectors @ np.asarray(face.embedding, np.float32)
        t = max(rec.threshold, self.search_threshold(len(f.ids)))
        paths = self.store.paths()
        order = np.argsort(-sims, kind="stable")
        return [self._hit(f, int(i), paths, "similar", float(sims[i])) for i in order if sims[i] >= t]

    @staticmethod
    def _hit(
        f: StoredFaces, i: int, paths: dict[str, list[str]], source: str, sim: float | None = None
    ) -> PhotoHit:
        c = int(f.clusters[i])
        return PhotoHit(
            int(f.ids[i]),
            tuple(paths.get(f.image_sha256[i], [])),
            f.boxes[i],
            None if c < 0 else c,
            source,
            sim,
        )


def _check_apart(k: _Known, a: int, b: int) -> None:
    """Refuse to join clusters ``a`` and ``b`` when both hold a face of one photo."""
    f = k.faces
    sa = {f.image_sha256[i] for i in np.flatnonzero(f.clusters == a).tolist()}
    sb = {f.image_sha256[i] for i in np.flatnonzero(f.clusters == b).tolist()}
    if sa & sb:
        raise GalleryError(
            f"clusters {a} and {b} both have a face in one photo (sha256 {sorted(sa & sb)[0][:12]}...): "
            "a photo shows a person once; remove the wrong face first (faceprint cluster remove-face)"
        )


def _by_image(hits: list[PhotoHit]) -> list[PhotoHit]:
    """Hits with a photo, by first path (so a listing reads as a list of photos)."""
    return sorted((h for h in hits if h.images), key=lambda h: (h.images[0], h.face_id))


def _box(b: Box) -> list[float]:
    return [round(b.x1, 2), round(b.y1, 2), round(b.x2, 2), round(b.y2, 2)]
