"""Recognise the faces of a stream per *track*, not per frame, and say "unknown" honestly.

Recognising every face in every frame is slow and flickers: one blurred or turned frame
names someone else. Here each frame goes through

    detect (every ``detect_every`` frames) -> track (:mod:`.tracking`) -> embed a track
    now and then -> vote over the track's embeddings -> label the track

**When a track is embedded** (only on frames where the detector ran and matched it, since
alignment needs fresh landmarks, and only when the face passes the quality gate of
:mod:`faceprint.quality`, the same one ``identify`` and enrolment use): when it starts,
then every ``embed_every`` frames, and sooner whenever its face is clearly better than the
best one embedded so far (quality at least :data:`BETTER` times higher). A face the gate
rejects (tiny, blurred, dark or turned away) is never evidence: on the Hamilton clip,
blurred audience faces of quality < 0.1 scored just above the threshold against an
enrolled person who was elsewhere in the clip, while every face correctly named had
quality > 0.35. The quality also weights a track's embeddings in its vote.

**The voting rule.** A track's evidence is its last :data:`MAX_EMBEDDINGS` embeddings.
Their quality-weighted mean vector picks the candidate (``Gallery.rank``: the person whose
centroid is most similar); the track's *score* for that person is the quality-weighted
mean of the individual embeddings' similarities with the person's centroid. The track is
labelled with the person when the score reaches the gallery's threshold (its operating
point: open-set for its size, calibrated, stored, or ``threshold=``) **and** it rests on
at least ``min_frames`` embeddings; until then it stays ``unknown``. Why the mean of
similarities rather than the similarity of the mean vector: averaging removes noise, so
a mean vector scores higher against *anyone*, strangers included, than the single faces
the threshold was calibrated on (on the 1080p crowd clip a stranger's mean vector passed
the threshold while none of its faces did); a mean of similarities stays on the
calibrated scale, and only gets steadier. The rule is re-applied after every new
embedding, so a track can change name, or fall back to ``unknown``, when the evidence
changes; each change to a name emits an ``identified`` event.

**Events** (dicts, also in ``FrameResult.events``): ``track_started`` (a track is
confirmed), ``identified`` (name, similarity, the number of embeddings it rests on, and
the frames and seconds since the track started), ``track_ended`` (duration, frames seen,
final label, and the best frame: the one with the highest quality; for an ``unknown``
track, the ``reason``: no face passed the quality gate, below the threshold, or too few
embeddings). Boxes are xyxy
pixels; similarities are cosine similarities; timestamps are seconds (container time for
files, wall clock for live sources).

**Large frames** (long side over 960 px, with YuNet) are not detected whole on every
detector frame: :mod:`.schedule` runs the detector on a 640 px copy, on full-resolution
crops around small tracked faces, and on the whole frame at full resolution every
``scan_every`` frames (30), so a new small face is found within that many frames while
tracked ones keep full-resolution detections (README's video table: the 1080p crowd clip
keeps its tracks at about twice the speed). Boxes and landmarks stay in the frame's
pixels, and faces are embedded from the full-resolution frame. ``scan_every=1`` detects
every detector frame whole, as before.

**Shot cuts.** The tracker sees only boxes, so at a hard cut a face of the new shot would
inherit the track (and the votes) of whoever stood there before. With ``cuts=True`` (the
default) every frame is compared with the previous one (:func:`.tracking.shot_changed`)
and a cut ends every track.

**A run's events** (``faceprint watch --events`` and the service's ``/v1/streams/{id}/events``
carry the same ones, built here): first :func:`run_header` (``run_started``: the source,
the models, the start time), then every frame's events in order.

Memory is constant on endless streams: a track keeps a bounded number of embeddings and
nothing is kept once it ends.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..quality import DEFAULT_GATE, QualityGate
from ..types import UNKNOWN, Face, Match, Recognition
from .schedule import SCAN_EVERY, DetectionSchedule, schedule_for
from .sources import Frame, FrameSource, open_source
from .tracking import ShotWatcher, Track, Tracker

if TYPE_CHECKING:
    from ..embedding import Embedder
    from ..gallery.gallery import Gallery
    from ..recognizer import Recognizer

#: A face this many times better (quality) than a track's best so far is embedded at once.
BETTER = 1.25
#: Embeddings a track keeps for its vote (the most recent; bounds memory).
MAX_EMBEDDINGS = 16
#: Detector options for tracking, per detector name. ByteTrack's second stage keeps a track
#: alive through weak detections (scores 0.3-0.6): let YuNet report them (tracks still
#: start only from confident ones).
TRACKING_DETECTOR_OPTIONS: dict[str, dict[str, Any]] = {"yunet": {"score_threshold": 0.3}}


def tracking_recognizer(
    detector: str | None = None,
    embedder: str | Embedder | None = None,
    *,
    flip: bool = False,
    threads: int | None = None,
) -> Recognizer:
    """The recognizer a stream runs with: ``detector`` (a registry name; ``None``: the
    default) configured for tracking (:data:`TRACKING_DETECTOR_OPTIONS`), and ``embedder``
    (a name, or a loaded embedder to share: the service hands its own, so a stream costs
    one small detector, not a second copy of the network, and makes the same vectors)."""
    from ..recognizer import Recognizer, default_detector_name

    name = detector or default_detector_name()
    return Recognizer(
        detector=name, embedder=embedder, flip=flip, threads=threads,
        detector_options=TRACKING_DETECTOR_OPTIONS.get(name),
    )  # fmt: skip


def run_header(source: Any, recognizer: Recognizer, gallery: Gallery | None) -> dict[str, Any]:
    """The first event of a run (``run_started``): what was watched (``source.description``),
    with which detector and embedder (and the model id of its vectors), from when (ISO 8601,
    UTC). Passwords in URLs are masked."""
    from datetime import UTC, datetime

    from ..config import mask_url

    return {
        "event": "run_started",
        "source": mask_url(source.description),
        "detector": recognizer.detector_name,
        "embedder": recognizer.embedder_name,
        "model": recognizer.model_id,  # the id of the vectors compared, flip included
        "gallery": None if gallery is None else mask_url(str(gallery.store.location)),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }


@dataclass(frozen=True, slots=True)
class TrackRecognition(Recognition):
    """A :class:`~faceprint.types.Recognition` of a tracked face. ``label`` is the track's
    decided identity (module doc), not this frame's best match: ``matches`` carries the
    evidence (the top person and similarity of the track's vote so far). ``coasting``: the
    detector missed the face on its latest frame, so ``face.box`` is only the motion
    model's guess (the track survives short occlusions, but is not drawn)."""

    track_id: int = 0
    identity: str = UNKNOWN
    frames: int = 0  # embeddings the vote rests on
    coasting: bool = False

    @property
    def label(self) -> str:
        return self.identity

    def to_dict(self) -> dict[str, Any]:
        d = Recognition.to_dict(self)
        d.update(label=self.identity, track_id=self.track_id, frames=self.frames, coasting=self.coasting)
        return d


@dataclass(frozen=True)
class FrameResult:
    """One processed frame: its recognitions (one per live confirmed track, coasting ones
    included), the events it produced, whether the detector ran, and the source's drop
    count so far. :attr:`visible` are the ones to show."""

    index: int
    timestamp: float
    recognitions: tuple[TrackRecognition, ...]
    events: tuple[dict[str, Any], ...] = ()
    detected: bool = True
    dropped: int = 0
    image: NDArray[np.uint8] | None = field(default=None, repr=False, compare=False)

    @property
    def visible(self) -> tuple[TrackRecognition, ...]:
        """The recognitions whose face the detector found on its latest frame: a coasting
        track's box is a guess, and drawing it for ``max_age`` frames after its face left
        shows a box on nothing."""
        return tuple(r for r in self.recognitions if not r.coasting)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "timestamp": self.timestamp,
            "detected": self.detected,
            "dropped": self.dropped,
            "recognitions": [r.to_dict() for r in self.recognitions],
            "events": list(self.events),
        }


@dataclass
class _TrackState:
    """What the stream knows about one track (bounded: see :data:`MAX_EMBEDDINGS`)."""

    track_id: int
    first_index: int
    first_time: float
    vectors: deque[tuple[NDArray[np.float32], float]] = field(
        default_factory=lambda: deque(maxlen=MAX_EMBEDDINGS)
    )
    embedded: int = 0
    last_embed_index: int = -(10**9)
    best_quality: float = -1.0
    best: dict[str, Any] = field(default_factory=dict)
    identity: str = UNKNOWN
    top: Match | None = None
    frames_seen: int = 0

    def evidence(self) -> NDArray[np.float32] | None:
        if not self.vectors:
            return None
        w = np.array([max(q, 1e-3) for _, q in self.vectors], dtype=np.float64)
        v = np.sum([vec * wi for (vec, _), wi in zip(self.vectors, w, strict=True)], axis=0)
        n = float(np.linalg.norm(v))
        return (v / n).astype(np.float32) if n > 0 else None


class StreamRecognizer:
    """The per-track state machine behind :func:`recognize_stream` (module doc).

    Feed frames with :meth:`process` (any RGB arrays, in order) and call :meth:`finish` at
    the end; or let :func:`recognize_stream` drive it from a source. ``schedule``: where
    the detector runs on large frames (:mod:`.schedule`); by default the one for the
    recognizer's detector with ``scan_every``, or None (every frame whole) for detectors it
    was not measured with.
    """

    def __init__(
        self,
        recognizer: Recognizer,
        gallery: Gallery | None,
        *,
        threshold: float | None = None,
        detect_every: int = 1,
        embed_every: int = 10,
        min_frames: int = 3,
        tracker: Tracker | None = None,
        cuts: bool = True,
        gate: QualityGate = DEFAULT_GATE,
        scan_every: int = SCAN_EVERY,
        schedule: DetectionSchedule | None = None,
    ) -> None:
        if detect_every < 1 or embed_every < 1 or min_frames < 1 or scan_every < 1:
            raise ValueError("detect_every, embed_every, min_frames and scan_every must be at least 1")
        self.recognizer = recognizer
        self.gallery = gallery
        self.detect_every = detect_every
        self.embed_every = embed_every
        self.min_frames = min_frames
        self.tracker = tracker or Tracker()
        if gallery is not None:
            gallery.check_model()
            self.threshold = gallery.operating_point(threshold).threshold
        else:
            self.threshold = float(threshold) if threshold is not None else 1.0
        self.cuts = cuts
        self.gate = gate
        self.schedule = schedule or schedule_for(recognizer.detector_name, scan_every)
        self._shots = ShotWatcher()
        self._frames = 0  # frames processed (the schedule's clock)
        self._states: dict[int, _TrackState] = {}
        self._count = 0
        self.embeddings = 0  # faces embedded so far (cost indicator)

    # -- per frame ------------------------------------------------------------------
    def process(
        self, image: NDArray[np.uint8], index: int, timestamp: float, dropped: int = 0
    ) -> FrameResult:
        events: list[dict[str, Any]] = []
        cut = self.cuts and self._shots(image)
        if cut:  # a new shot: no face of it continues a track of the last one
            events += [self._ended(t, index, timestamp) for t in self.tracker.close()]
            self._count = 0  # detect on the first frame of the shot
            if self.schedule is not None:
                self.schedule.reset()  # ... at full resolution: every face is new
        detect = self._count % self.detect_every == 0
        self._count += 1
        self._frames += 1
        upd = self.tracker.update(self._detect(image)) if detect else self.tracker.predict()
        for t in upd.started:
            st = _TrackState(t.id, index, timestamp)
            self._states[t.id] = st
            events.append(
                {"event": "track_started", "track_id": t.id, "frame": index, "timestamp": timestamp,
                 "box": t.box.to_dict()}
            )  # fmt: skip
        todo: list[tuple[Track, float]] = []
        for t in upd.tracks:
            found = self._states.get(t.id)
            if found is None:  # confirmed before this stream state existed (shared tracker)
                found = self._states[t.id] = _TrackState(t.id, index, timestamp)
            st = found
            st.frames_seen += 1
            if detect and t.face is not None and t.face.landmarks is not None:
                q, rejected = self.gate.check(image, t.face)
                due = index - st.last_embed_index >= self.embed_every
                better = q >= BETTER * max(st.best_quality, 1e-6)
                if rejected is None and (st.embedded == 0 or due or better):
                    todo.append((t, q))
        if todo:
            self._embed(image, todo, index, timestamp, events)
        for t in upd.ended:
            events.append(self._ended(t, index, timestamp))
        recs = tuple(self._recognition(t) for t in upd.tracks)
        return FrameResult(index, timestamp, recs, tuple(events), detect, dropped, image)

    def finish(self, index: int, timestamp: float) -> list[dict[str, Any]]:
        """End every live track (end of stream): their ``track_ended`` events."""
        return [self._ended(t, index, timestamp) for t in self.tracker.close()]

    # -- internals ------------------------------------------------------------------
    def _detect(self, image: NDArray[np.uint8]) -> list[Face]:
        """This frame's faces: the whole frame, or where the schedule says for a large one."""
        if self.schedule is None:
            return self.recognizer.detector.detect(image)
        return self.schedule.detect(self.recognizer.detector, image, self._frames, self.tracker.expected())

    def _embed(
        self,
        image: NDArray[np.uint8],
        todo: list[tuple[Track, float]],
        index: int,
        timestamp: float,
        events: list[dict[str, Any]],
    ) -> None:
        faces = [t.face for t, _ in todo if t.face is not None]
        embedded = self.recognizer.embed(image, faces)
        self.embeddings += len(embedded)
        for (t, q), f in zip(todo, embedded, strict=True):
            st = self._states[t.id]
            assert f.embedding is not None
            st.vectors.append((np.asarray(f.embedding, dtype=np.float32), q))
            st.embedded += 1
            st.last_embed_index = index
            if q > st.best_quality:
                st.best_quality = q
                st.best = {
                    "frame": index,
                    "timestamp": timestamp,
                    "quality": round(q, 4),
                    "box": t.box.to_dict(),
                }
            self._decide(st, index, timestamp, events)

    def _decide(self, st: _TrackState, index: int, timestamp: float, events: list[dict[str, Any]]) -> None:
        v = st.evidence()
        if v is None or self.gallery is None:
            return
        (matches,) = self.gallery.rank(v[None, :], 1)
        st.top = None
        if matches:
            cand = matches[0]
            centroid = self.gallery.store.centroids([cand.identity]).get(cand.identity)
            if centroid is not None:
                q = np.array([max(w, 1e-3) for _, w in st.vectors], dtype=np.float64)
                sims = np.array([float(vec @ centroid) for vec, _ in st.vectors], dtype=np.float64)
                st.top = Match(cand.identity, float(sims @ q / q.sum()), cand.face_id)
        ok = st.top is not None and st.top.similarity >= self.threshold and len(st.vectors) >= self.min_frames
        new = st.top.identity if ok and st.top is not None else UNKNOWN
        if new != st.identity and new != UNKNOWN and st.top is not None:
            events.append(
                {"event": "identified", "track_id": st.track_id, "name": new,
                 "similarity": round(st.top.similarity, 6), "embeddings": len(st.vectors),
                 "frame": index, "timestamp": timestamp, "frames_since_start": index - st.first_index,
                 "seconds_since_start": round(timestamp - st.first_time, 4), "threshold": self.threshold}
            )  # fmt: skip
        st.identity = new

    def _recognition(self, t: Track) -> TrackRecognition:
        st = self._states[t.id]
        face = t.face if t.face is not None else Face(t.box, t.score)
        face = replace(face, track_id=t.id, embedding=None, embedding_model=None)
        matches = (st.top,) if st.top is not None else ()
        return TrackRecognition(
            face, matches, self.threshold, track_id=t.id, identity=st.identity, frames=len(st.vectors),
            coasting=t.misses > 0,
        )  # fmt: skip

    def _ended(self, t: Track, index: int, timestamp: float) -> dict[str, Any]:
        st = self._states.pop(t.id, None) or _TrackState(t.id, index, timestamp)
        out = {
            "event": "track_ended", "track_id": t.id, "frame": index, "timestamp": timestamp,
            "duration": round(timestamp - st.first_time, 4), "frames": st.frames_seen,
            "embeddings": st.embedded, "label": st.identity,
            "similarity": None if st.top is None else round(st.top.similarity, 6),
            "threshold": self.threshold, "best_frame": st.best or None,
        }  # fmt: skip
        if st.identity == UNKNOWN:
            out["reason"] = self._why_unknown(st)
        return out

    def _why_unknown(self, st: _TrackState) -> str:
        """Why a track ended ``unknown``, in words: a similarity above the threshold alone
        does not name a track (module doc), and a summary that shows one should say why."""
        if self.gallery is None:
            return "no gallery"
        if st.embedded == 0:
            return "no face passed the quality gate"
        if st.top is None:
            return "nobody enrolled"
        if st.top.similarity < self.threshold:
            return f"below the threshold ({st.top.similarity:.3f} < {self.threshold:.3f})"
        return f"too few embeddings ({len(st.vectors)} of the {self.min_frames} needed)"


def recognize_stream(
    recognizer: Recognizer,
    gallery: Gallery | None,
    source: Any,
    *,
    threshold: float | None = None,
    detect_every: int = 1,
    embed_every: int = 10,
    min_frames: int = 3,
    max_fps: float | None = None,
    reconnect: bool = False,
    tracker: Tracker | None = None,
    cuts: bool = True,
    gate: QualityGate = DEFAULT_GATE,
    scan_every: int = SCAN_EVERY,
    max_frames: int | None = None,
    stop: threading.Event | None = None,
    lock: AbstractContextManager[Any] | None = None,
) -> Iterator[FrameResult]:
    """Recognise faces in ``source`` per track (module doc); a generator of
    :class:`FrameResult`, one per processed frame, in constant memory.

    The stream ends at the source's end, after ``max_frames`` frames, or when ``stop`` is
    set (checked before each frame; another thread sets it): in each case every live track
    ends with its ``track_ended`` event. ``lock`` (a context manager) is held around each
    frame's detection, embedding and vote, never while a frame is read, and entered once per
    frame, so it must be reusable (a ``threading.Lock``, say): a service whose requests
    share these models takes turns with them frame by frame.

    ``source`` is anything :func:`.sources.open_source` takes (a file path, a camera
    index, an RTSP/HTTP URL, an iterable of RGB frames) or an open
    :class:`~.sources.FrameSource`. ``gallery=None`` (or an empty gallery) leaves every
    track ``unknown``. The last result carries the ``track_ended`` events of the tracks
    still live when the stream ends; the source is closed when the generator finishes or
    is closed.
    """
    src = (
        source
        if isinstance(source, FrameSource)
        else open_source(source, max_fps=max_fps, reconnect=reconnect)
    )
    sr = StreamRecognizer(
        recognizer, gallery, threshold=threshold, detect_every=detect_every, embed_every=embed_every,
        min_frames=min_frames, tracker=tracker, cuts=cuts, gate=gate, scan_every=scan_every,
    )  # fmt: skip
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames: expected None or at least 1, got {max_frames}")
    turn: AbstractContextManager[Any] = lock if lock is not None else nullcontext()
    last: Frame | None = None
    done = 0
    try:
        for frame in src:
            if stop is not None and stop.is_set():
                break
            last = frame
            with turn:
                res = sr.process(frame.image, frame.index, frame.timestamp, src.dropped)
            yield res
            done += 1
            if max_frames is not None and done >= max_frames:
                break
        idx = last.index if last is not None else 0
        ts = last.timestamp if last is not None else time.time()
        ended = sr.finish(idx, ts)
        if ended:
            yield FrameResult(idx, ts, (), tuple(ended), False, src.dropped)
    finally:
        src.close()
