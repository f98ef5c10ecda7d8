"""Settings: the only module that reads the environment.

Precedence everywhere: an explicit argument beats the environment, which beats the
model's or the library's default. Variables:

``FACEPRINT_HOME``        base dir for cache and data (default: ``~/.cache/faceprint`` for the
                          cache; data, i.e. the gallery, in the user data directory below)
``FACEPRINT_CACHE``       cache dir for downloaded models (default: ``$FACEPRINT_HOME/models``)
``FACEPRINT_MODELS``      extra model directories, separated by ``os.pathsep``
``FACEPRINT_OFFLINE``     ``1`` forbids downloads; a missing model names the command to run
``FACEPRINT_MAX_PIXELS``  pixel cap for decoded images (decompression-bomb guard)
``FACEPRINT_DETECTOR``    default detector name (otherwise the best one available)
``FACEPRINT_EMBEDDER``    default embedder name
``FACEPRINT_GALLERY``     default gallery: an SQLite file or a postgresql:// URL
                          (default: ``gallery.sqlite`` in ``Settings.data_dir``)
``FACEPRINT_SERVICE_DB``  the service's own SQLite file: API keys (hashed) and the audit log
                          (default: ``service.sqlite`` in ``Settings.data_dir``)
``FACEPRINT_SERVICE_CONFIG``  set by ``faceprint serve`` for its worker processes (JSON)
``FACEPRINT_TEST_SLEEP_BEFORE_COMMIT``  **tests only**: seconds every gallery write sleeps
                          inside its transaction, after its writes and before COMMIT, so a
                          durability test can SIGKILL a process there (default 0: off)

``Settings.data_dir`` holds what a user cannot lose (the default gallery), so it is not a
cache directory that cleaners empty: ``$FACEPRINT_HOME`` when that is set, else the user
data directory of ``platformdirs`` (``$XDG_DATA_HOME/faceprint``, by default
``~/.local/share/faceprint`` on Linux; ``~/Library/Application Support/faceprint`` on
macOS). ``Settings.legacy_gallery`` is where faceprint 0.1 kept the default gallery
(``~/.cache/faceprint/gallery.sqlite``), for :mod:`faceprint.gallery.legacy` to move it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: 64 megapixels: larger than any camera photo a user is likely to have, smaller than a
#: decompression bomb (a 2 KB PNG that decodes to gigabytes).
DEFAULT_MAX_PIXELS = 64_000_000

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Build with :meth:`from_env`; override fields explicitly."""

    home: Path
    cache_dir: Path
    model_dirs: tuple[Path, ...] = ()
    offline: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    detector: str | None = None
    embedder: str | None = None
    gallery: str | None = None
    data_dir: Path | None = None  # None: home (Settings built by hand)
    legacy_gallery: Path | None = None
    test_sleep_before_commit: float = 0.0
    service_db_path: Path | None = None
    #: ``FACEPRINT_SERVICE_CONFIG``: JSON that ``faceprint serve`` hands its uvicorn workers
    #: (:class:`faceprint.server.config.ServiceConfig`); not meant to be set by hand
    service_config: str | None = None

    @property
    def default_gallery(self) -> Path:
        """The SQLite file used when no gallery is named (module doc)."""
        return (self.data_dir or self.home) / "gallery.sqlite"

    @property
    def service_db(self) -> Path:
        """The service's keys and audit log (``faceprint serve``, ``faceprint keys``): data a
        user cannot lose either, so beside the default gallery unless named."""
        return self.service_db_path or (self.data_dir or self.home) / "service.sqlite"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``env`` (default: ``os.environ``)."""
        e = os.environ if env is None else env
        old_home = Path.home() / ".cache" / "faceprint"
        home = Path(e.get("FACEPRINT_HOME") or old_home).expanduser()
        if e.get("FACEPRINT_HOME"):
            data_dir, legacy = home, None
        else:
            import platformdirs  # reads XDG_DATA_HOME (Linux) from the process environment

            data_dir, legacy = platformdirs.user_data_path("faceprint", appauthor=False), old_home
        cache = Path(e.get("FACEPRINT_CACHE") or home / "models").expanduser()
        dirs = tuple(Path(p).expanduser() for p in e.get("FACEPRINT_MODELS", "").split(os.pathsep) if p)
        try:
            max_pixels = int(e.get("FACEPRINT_MAX_PIXELS") or DEFAULT_MAX_PIXELS)
        except ValueError:
            max_pixels = DEFAULT_MAX_PIXELS
        try:
            sleep = max(0.0, float(e.get("FACEPRINT_TEST_SLEEP_BEFORE_COMMIT") or 0.0))
        except ValueError:
            sleep = 0.0
        return cls(
            home=home,
            cache_dir=cache,
            model_dirs=dirs,
            offline=e.get("FACEPRINT_OFFLINE", "").strip().lower() in _TRUE,
            max_pixels=max_pixels,
            detector=e.get("FACEPRINT_DETECTOR") or None,
            embedder=e.get("FACEPRINT_EMBEDDER") or None,
            gallery=e.get("FACEPRINT_GALLERY") or None,
            data_dir=data_dir,
            legacy_gallery=None if legacy is None else legacy / "gallery.sqlite",
            test_sleep_before_commit=sleep,
            service_db_path=Path(db).expanduser() if (db := e.get("FACEPRINT_SERVICE_DB")) else None,
            service_config=e.get("FACEPRINT_SERVICE_CONFIG") or None,
        )


def get_settings() -> Settings:
    """Current settings, read from the environment at call time (never at import)."""
    return Settings.from_env()


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (userinfo and ``password=`` options).

    Gallery URLs and camera/RTSP URLs both carry credentials, and both end up in error
    messages, logs and descriptions; this is the one place that hides them. The userinfo
    match runs to the last ``@`` before the path, so a camera password with an unescaped
    ``@`` in it is masked whole rather than leaking its tail.
    """
    out = re.sub(r"(://[^:/@?#]*):[^/?#]*@", r"\1:***@", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", out, flags=re.IGNORECASE)
