"""A fine-tuned model as a directory (a MODEL_DIR, format :data:`CARD_FORMAT`), and the
embedder that runs it (:class:`ModelDirEmbedder`).

``faceprint train`` writes one; ``--embedder MODEL_DIR`` (or ``FACEPRINT_EMBEDDER=MODEL_DIR``)
loads it wherever an embedder name is accepted (:func:`faceprint.registry.create_embedder`
tells a path from a registered name). The directory::

    MODEL_DIR/
      model.onnx           the graph: input "crops" uint8 (N, 150, 150, 3), RGB NHWC dlib chips
                           (dynamic N); output "descriptors" float32 (N, dim), raw (the embedder
                           L2-normalises them, so vectors compare by cosine similarity)
      card.json            the model card (below)
      impostors.json       the impostor score distribution fitted on the training data for this
                           model's id (scoring.fit_distribution), for the open-set threshold
      impostors+flip.json  optional: the same for flip TTA (model id + "+flip")

``card.json`` is a JSON object; the keys read here are ``format`` (:data:`CARD_FORMAT`),
``name`` (a slug, :data:`NAME_PATTERN`), ``network`` and ``version`` (the model id's parts),
``dim``, ``chip`` (``{"size": 150, "template": "dlib"}``: crops are aligned with dlib's
chip templates, :func:`faceprint.embedding.dlib.chip_templates`), ``files`` (the sha256 of
``model.onnx``, ``impostors.json`` and, when present, ``impostors+flip.json``),
``default_threshold`` and ``flip_threshold`` (cosine similarities: the 1:1 thresholds
fitted on the training data; ``flip_threshold`` may be null). A ``model_id`` key, when
present, must be the id these make. Any other key (``base``, ``data``, ``training``,
``metrics``...) is free-form documentation.

**Model id.** ``network@version+<first 8 hex of sha256(model.onnx)>`` (``+flip`` with
flip TTA), as :func:`faceprint.embedding.model_id` makes it: a fine-tuned model can never
pass for the stock one (``dlib@resnet_v1+55533b28``), and a gallery filled by another
model refuses its vectors (``faceprint gallery reembed`` converts one).

**Why everything is checked before use.** A MODEL_DIR is data a user copies around; a
half-copied or edited one would otherwise give vectors that silently mean something else.
Loading refuses, with :class:`~faceprint.errors.ModelUnavailableError` and one line saying
what was expected and found: a path that does not exist or is a file, a missing file, a
card that is not JSON or has the wrong format or missing/ill-typed keys, a file whose
sha256 differs from its card's, an ONNX file onnxruntime cannot load, or a graph whose
I/O is not ``(N, 150, 150, 3) uint8 -> (N, dim) float32``. The bytes hashed are the bytes
run: ``model.onnx`` is read once, hashed, and handed to onnxruntime from memory.

**Open-set threshold.** Loading registers the directory's impostor distributions for its
model ids (:func:`faceprint.gallery.scoring.register_distribution`), so ``identify`` on a
gallery bound to the model gets the open-set threshold fitted on the training data.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import GalleryError, ModelUnavailableError
from ..models import sha256_file
from ..types import Image
from . import format_model_id
from .dlib import chip_templates
from .onnx_session import (
    CHIP_SIZE,
    INPUT_NAME,
    OUTPUT_NAME,
    check_options,
    embed_batched,
    new_session,
    require,
)

#: The ``format`` of the card this faceprint reads and ``faceprint train`` writes.
CARD_FORMAT = "faceprint-model/1"
CARD_FILE = "card.json"
ONNX_FILE = "model.onnx"
IMPOSTORS_FILE = "impostors.json"
IMPOSTORS_FLIP_FILE = "impostors+flip.json"
#: The files every MODEL_DIR holds (and its card hashes); :data:`IMPOSTORS_FLIP_FILE` is optional.
REQUIRED_FILES = (ONNX_FILE, IMPOSTORS_FILE)
#: The chip a MODEL_DIR's graph takes: dlib's 150x150 chip, aligned with its templates.
CHIP = {"size": 150, "template": "dlib"}
#: A model's ``name``: a lowercase slug.
NAME_PATTERN = r"[a-z0-9][a-z0-9._-]{0,63}"
#: ``network`` and ``version``: no ``@``, ``+``, slash or space, so the model id parses.
_ID_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_HELP = "a directory written by faceprint train (card.json, model.onnx, impostors.json)"


def _refuse(message: str) -> ModelUnavailableError:
    return ModelUnavailableError(message)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_dir(path: str | os.PathLike[str]) -> None:
    """Refuse ``path`` (named as given) unless it is an existing directory."""
    where = Path(path).expanduser()
    if not where.exists():
        raise _refuse(f"no MODEL_DIR at {os.fspath(path)}: expected {_HELP}, found nothing there")
    if not where.is_dir():
        raise _refuse(f"{os.fspath(path)} is a file, expected a MODEL_DIR: {_HELP}")


def _check_card(card: Any, where: str) -> dict[str, Any]:
    """``card`` when it is a valid card (module doc); else the first problem, one line."""
    if not isinstance(card, dict):
        raise _refuse(f"{where}: expected a JSON object (the model card), found {type(card).__name__}")
    if card.get("format") != CARD_FORMAT:
        raise _refuse(
            f"{where}: expected format {CARD_FORMAT!r}, found {card.get('format')!r} "
            "(written by another tool, or by a newer faceprint)"
        )
    required = ("name", "network", "version", "dim", "chip", "files", "default_threshold")
    missing = [k for k in required if k not in card]
    if missing:
        raise _refuse(f"{where}: the card lacks {', '.join(missing)}")

    def bad(key: str, expected: str) -> ModelUnavailableError:
        return _refuse(f"{where}: {key} must be {expected}, found {card[key]!r}")

    if not isinstance(card["name"], str) or not re.fullmatch(NAME_PATTERN, card["name"]):
        raise bad("name", f"a lowercase slug ({NAME_PATTERN})")
    for key in ("network", "version"):
        if not isinstance(card[key], str) or not re.fullmatch(_ID_PART, card[key]):
            raise bad(key, "letters, digits, '.', '_' or '-' (it becomes part of the model id)")
    if isinstance(card["dim"], bool) or not isinstance(card["dim"], int) or not 1 <= card["dim"] <= 4096:
        raise bad("dim", "an integer from 1 to 4096")
    if card["chip"] != CHIP:
        raise bad("chip", f"{json.dumps(CHIP)} (the only chip this faceprint aligns for)")
    for key in ("default_threshold", "flip_threshold"):
        v: Any = card.get(key)
        if (v is not None or key == "default_threshold") and not (_is_number(v) and -1.0 <= v <= 1.0):
            raise bad(key, "a cosine similarity in [-1, 1]" + (" or null" if key == "flip_threshold" else ""))
    files = card["files"]
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and _SHA256.fullmatch(v) for k, v in files.items()
    ):
        raise bad("files", "an object mapping file names to sha256 hex digests")
    absent = [f for f in REQUIRED_FILES if f not in files]
    if absent:
        raise _refuse(f"{where}: files lacks the sha256 of {', '.join(absent)}")
    odd = [f for f in files if f != Path(f).name or f in ("", ".", "..", CARD_FILE)]
    if odd:
        raise _refuse(f"{where}: files may list only plain file names beside the card, found {odd[0]!r}")
    return card


def read_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The model card of the MODEL_DIR at ``path``, checked (module doc): the directory
    exists and holds a ``card.json`` of :data:`CARD_FORMAT` with every key this faceprint
    reads, well typed. The files it lists are not checked here (:func:`check_model_dir`).
    Raises :class:`~faceprint.errors.ModelUnavailableError`."""
    base = Path(path).expanduser()
    _check_dir(path)
    card_path = base / CARD_FILE
    if not card_path.is_file():
        found = sorted(p.name for p in base.iterdir())
        listing = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        raise _refuse(
            f"{base} is not a MODEL_DIR: expected {CARD_FILE} in it, found "
            + (listing if found else "an empty directory")
        )
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refuse(
            f"{CARD_FILE} in {base} is not readable JSON ({exc}): expected the model card"
        ) from None
    return _check_card(card, f"{CARD_FILE} in {base}")


@dataclass(frozen=True)
class ModelDir:
    """A checked MODEL_DIR: its ``path`` (``~`` expanded), its ``card`` and its impostor
    distributions by model id (the dicts :func:`~faceprint.gallery.scoring.fit_distribution`
    makes), each checked to be fitted for that id."""

    path: Path
    card: Mapping[str, Any]
    distributions: Mapping[str, dict[str, Any]]

    @property
    def network(self) -> str:
        return str(self.card["network"])

    @property
    def version(self) -> str:
        return str(self.card["version"])

    @property
    def dim(self) -> int:
        return int(self.card["dim"])

    @property
    def weights_sha256(self) -> str:
        """sha256 of ``model.onnx`` (checked against the file): the model id's weights part."""
        return str(self.card["files"][ONNX_FILE]).lower()

    @property
    def default_threshold(self) -> float:
        return float(self.card["default_threshold"])

    @property
    def flip_threshold(self) -> float:
        """The card's flip threshold; its 1:1 threshold when the card has none."""
        v = self.card.get("flip_threshold")
        return self.default_threshold if v is None else float(v)

    def model_id(self, flip: bool = False) -> str:
        """The id of this model's vectors (module doc), computed where every id is."""
        return format_model_id(self.network, self.version, self.weights_sha256, flip, str(self.path))


def _inspect(path: str | os.PathLike[str], read_model: bool) -> tuple[ModelDir, bytes | None]:
    """:func:`check_model_dir`; with ``read_model`` also the bytes of ``model.onnx`` that
    were hashed (what the embedder then runs)."""
    card = read_card(path)
    base = Path(path).expanduser()
    files: dict[str, str] = card["files"]
    flip_file = base / IMPOSTORS_FLIP_FILE
    if flip_file.exists() and IMPOSTORS_FLIP_FILE not in files:
        raise _refuse(
            f"{IMPOSTORS_FLIP_FILE} in {base} is not listed in its card's files: it cannot be checked; "
            "retrain, or remove the file"
        )
    for name in files:
        if not (base / name).is_file():
            raise _refuse(f"{base} is incomplete: expected {name} (listed in its card), found none")
    model_bytes: bytes | None = None
    for name, expected in files.items():
        try:
            if name == ONNX_FILE and read_model:
                model_bytes = (base / name).read_bytes()
                found = hashlib.sha256(model_bytes).hexdigest()
            else:
                found = sha256_file(base / name)
        except OSError as exc:
            raise _refuse(f"cannot read {name} in {base}: {exc.strerror or exc}") from None
        if found != expected.lower():
            raise _refuse(
                f"{name} in {base} has sha256 {found[:12]}… but its card says {expected.lower()[:12]}…: "
                "the directory was changed after training; retrain or restore it"
            )
    from ..gallery.scoring import check_distribution

    partial = ModelDir(base, card, {})
    stated = card.get("model_id")
    if stated is not None and stated != partial.model_id():
        raise _refuse(
            f"{CARD_FILE} in {base} says model_id {stated!r}, but its network, version and "
            f"{ONNX_FILE} make {partial.model_id()!r}: the card was edited; retrain or restore it"
        )
    distributions: dict[str, dict[str, Any]] = {}
    for name, flip in ((IMPOSTORS_FILE, False), (IMPOSTORS_FLIP_FILE, True)):
        if name not in files:
            continue
        model = partial.model_id(flip)
        try:
            data = json.loads((base / name).read_text(encoding="utf-8"))
            check_distribution(data, model, f"MODEL_DIR {base}", f"{name} in {base}")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _refuse(
                f"{name} in {base} is not readable JSON ({exc}): expected an impostor distribution"
            ) from None
        except GalleryError as exc:
            raise _refuse(str(exc)) from None
        distributions[model] = data
    return ModelDir(base, card, distributions), model_bytes


def check_model_dir(path: str | os.PathLike[str]) -> ModelDir:
    """The MODEL_DIR at ``path``, checked without loading the graph: a valid card
    (:func:`read_card`), every file it lists present with the sha256 it records, no
    unlisted ``impostors+flip.json``, and impostor distributions fitted for this model's
    ids. Raises :class:`~faceprint.errors.ModelUnavailableError` (one line: what was
    expected, what was found). What onnxruntime makes of the graph is checked by
    :class:`ModelDirEmbedder`."""
    return _inspect(path, read_model=False)[0]


def register_distributions(model_dir: ModelDir) -> None:
    """Make ``model_dir``'s impostor distributions the ones of its model ids in this process
    (:func:`faceprint.gallery.scoring.register_distribution`), so a gallery bound to them
    uses the open-set threshold fitted on the training data."""
    from ..gallery.scoring import register_distribution

    for model, data in model_dir.distributions.items():
        register_distribution(data, model, f"MODEL_DIR {model_dir.path}")


def register_model_dir(path: str | os.PathLike[str]) -> ModelDir:
    """Check the MODEL_DIR at ``path`` and register its distributions without loading its
    graph: for a gallery whose configured embedder is a MODEL_DIR not loaded yet (listing,
    ``gallery threshold``). Raises :class:`~faceprint.errors.ModelUnavailableError`."""
    md = check_model_dir(path)
    register_distributions(md)
    return md


def _describe(args: Sequence[Any]) -> str:
    return ", ".join(f"{a.name!r} {a.type} {tuple(a.shape)}" for a in args) or "none"


def _check_io(session: Any, dim: int, where: str) -> None:
    """Refuse a graph whose I/O is not ``crops uint8 (N, 150, 150, 3) -> descriptors float32
    (N, dim)``: first from its declared types and shapes, then by running a batch of two
    blank chips (which also proves the batch size is dynamic and the graph runs)."""
    ins, outs = session.get_inputs(), session.get_outputs()
    s = CHIP_SIZE
    want = f"input {INPUT_NAME!r} uint8 (N, {s}, {s}, 3) and output {OUTPUT_NAME!r} float32 (N, {dim})"
    found = f"inputs {_describe(ins)}; outputs {_describe(outs)}"
    ok_in = (
        len(ins) == 1
        and ins[0].name == INPUT_NAME
        and ins[0].type == "tensor(uint8)"
        and len(ins[0].shape) == 4
        and list(ins[0].shape[1:]) == [s, s, 3]
    )
    out = [o for o in outs if o.name == OUTPUT_NAME]
    ok_out = (
        len(out) == 1
        and out[0].type == "tensor(float)"
        and len(out[0].shape) == 2
        and (out[0].shape[1] == dim or not isinstance(out[0].shape[1], int))
    )
    if not (ok_in and ok_out):
        raise _refuse(f"{where} does not fit a MODEL_DIR: expected {want}, found {found}")
    try:
        probe = session.run([OUTPUT_NAME], {INPUT_NAME: np.zeros((2, s, s, 3), np.uint8)})[0]
    except Exception as exc:  # onnxruntime's own errors: the graph does not run
        raise _refuse(f"{where} fails on a batch of 2 chips: expected {want} ({exc})") from None
    shape, dtype = tuple(getattr(probe, "shape", ())), getattr(probe, "dtype", None)
    if shape != (2, dim) or dtype != np.float32:
        raise _refuse(
            f"{where} does not fit a MODEL_DIR: expected (2, {dim}) float32 for 2 chips, "
            f"found {shape} {dtype}"
        )


class ModelDirEmbedder:
    """The model of a MODEL_DIR (module doc) run by ONNX Runtime: 150x150 RGB uint8 dlib
    chips in, ``(N, dim)`` float32 L2-normalised vectors out (cosine similarity).

    ``path`` is the MODEL_DIR; it is also this embedder's :attr:`name`, as given, so
    results and pipeline specs name it and rebuild it. ``network``, ``version``, ``dim``,
    the thresholds and :attr:`weights_sha256` (of ``model.onnx``) come from the checked
    card. ``intra_op_threads`` (0 = ONNX Runtime's default), ``providers`` and
    ``batch_size`` as for :class:`~faceprint.embedding.dlib_onnx.DlibOnnxEmbedder`.
    Constructing one registers its impostor distributions (:func:`register_distributions`).
    Raises :class:`~faceprint.errors.ModelUnavailableError` for anything that is not a
    complete, unchanged MODEL_DIR whose graph onnxruntime runs.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        intra_op_threads: int = 0,
        providers: Sequence[str] | None = None,
        batch_size: int = 32,
    ) -> None:
        check_options(intra_op_threads, batch_size)
        self.name = os.fspath(path)
        who = f"the MODEL_DIR embedder {self.name}"
        require("onnxruntime", who)
        md, data = _inspect(path, read_model=True)
        assert data is not None  # read_model=True
        where = f"{ONNX_FILE} in {md.path}"
        try:
            self._session: Any = new_session(data, intra_op_threads, providers, who)
        except Exception as exc:  # onnxruntime's InvalidProtobuf, Fail, ...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise _refuse(f"onnxruntime cannot load {where}: {first}; expected an ONNX graph") from None
        _check_io(self._session, md.dim, where)
        self.model_dir = md
        self.card = md.card
        self.network = md.network
        self.version = md.version
        self.dim = md.dim
        self.weights_sha256 = md.weights_sha256
        self.default_threshold = md.default_threshold
        self.flip_threshold = md.flip_threshold
        self.batch_size = batch_size
        self.crop_templates = (chip_templates(),)
        register_distributions(md)

    def embed(self, crops: Sequence[Image]) -> NDArray[np.float32]:
        """``(N, dim)`` float32 unit vectors for 150x150 RGB uint8 chips (any N)."""
        return embed_batched(self._session, crops, self.dim, self.batch_size, self.name)
