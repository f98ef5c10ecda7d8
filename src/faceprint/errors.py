"""The one error tree of faceprint.

Every failure a user can cause or meet is a subclass of :class:`FaceprintError`, so
callers can catch one type, and the CLI can turn any of them into a one-line message
with exit code 1. Each message says what was expected and what was found.

::

    FaceprintError
    ├── InvalidImageError          unreadable, truncated, empty or unsupported image data
    │   └── ImageTooLargeError     more pixels than the configured cap (decompression bombs)
    ├── NoFaceError                an image where a face was required has none
    ├── MultipleFacesError         several faces where exactly one was required (--strict)
    ├── ModelUnavailableError      a model file is missing, corrupt, or cannot be downloaded
    ├── UnknownComponentError      an unknown detector/embedder name (lists the valid ones)
    ├── InvalidArgumentError       an argument value out of its range (also a ValueError)
    ├── MissingExtraError          an optional dependency is not installed (names the extra)
    ├── AlignmentError             landmarks that cannot be aligned to the embedder's template
    ├── EvaluationError            a malformed pairs file or dataset layout
    ├── GalleryError               a gallery that cannot be read or written
    │   ├── UnknownPersonError     no person with that name or id (a service's 404)
    │   ├── UnknownFaceError       no enrolled face with that id (a service's 404)
    │   └── NameTakenError         a person's name already in use (a service's 409)
    ├── IncompatibleEmbeddingError vectors from another model than the one expected
    └── VideoError                 a video file, camera or stream that cannot be opened or read
"""

from __future__ import annotations


class FaceprintError(Exception):
    """Base class of every error faceprint raises on purpose."""


class InvalidImageError(FaceprintError):
    """The input is not a decodable image (missing, empty, truncated, wrong type)."""


class ImageTooLargeError(InvalidImageError):
    """The image has more pixels than ``Settings.max_pixels`` (decompression-bomb guard)."""


class NoFaceError(FaceprintError):
    """No face was found where one was required."""


class MultipleFacesError(FaceprintError):
    """Several faces were found where exactly one was required."""


class ModelUnavailableError(FaceprintError):
    """A model file is missing, fails its checksum, or cannot be fetched."""


class UnknownComponentError(FaceprintError, KeyError):
    """A registry name that does not exist; the message lists the ones that do."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class InvalidArgumentError(FaceprintError, ValueError):
    """An argument value outside what the function accepts (a negative count, a
    threshold that is not a cosine similarity, a rate outside (0, 1)); the message names
    the argument, the range and the value found. A ValueError too, so callers that
    catch ValueError keep working; the CLI reports it as a usage error (exit 2)."""


class MissingExtraError(FaceprintError, ImportError):
    """An optional dependency is missing; the message names the pip extra to install."""


class AlignmentError(FaceprintError):
    """Landmarks are absent, degenerate, or of a scheme the embedder cannot align."""


class EvaluationError(FaceprintError):
    """A pairs file or dataset layout that does not follow the expected protocol."""


class GalleryError(FaceprintError):
    """A gallery that cannot be opened, read or written."""


class UnknownPersonError(GalleryError):
    """No person in the gallery has the name or id asked for. A GalleryError too, so
    callers that catch that keep working; a service answers it with 404."""


class UnknownFaceError(GalleryError):
    """No face in the gallery has the face id asked for (a service's 404)."""


class UnknownClusterError(GalleryError):
    """A photo-collection cluster or indexed face id that does not exist."""


class NameTakenError(GalleryError):
    """A person's name is already in use by another person of the gallery: names are
    unique (creating or renaming onto one; a service's 409)."""


class GalleryUnavailableError(GalleryError):
    """The gallery cannot be reached now (its database server is down or restarting, or
    its file is locked by another writer past the wait): trying again later may work."""


class IncompatibleEmbeddingError(FaceprintError):
    """Vectors produced by another model (name/version) than the one expected."""


class VideoError(FaceprintError):
    """A video source that cannot be opened or read: a missing or corrupt file, a file with
    no frames, an unsupported URL scheme, a camera that is absent or disconnects."""


class TrainingError(FaceprintError):
    """Fine-tuning cannot run as asked: a training folder too small for the loss (fewer
    than 2 people with 2+ usable images), a bad hyper-parameter, a device that is absent,
    an output directory that cannot be written, a checkpoint that does not fit the run."""
