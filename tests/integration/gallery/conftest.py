"""Fixtures of the gallery suite. ``store_factory`` is parametrised by backend, so the
same tests run on every store (a ``"postgres"`` param is added where a server exists)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import GALLERY, MODELS, need
from faceprint.gallery.gallery import Gallery
from faceprint.gallery.records import Store
from faceprint.recognizer import Recognizer

KNN = GALLERY / "face_recognition_knn"

StoreFactory = Callable[[], Store]


@pytest.fixture(scope="session")
def recognizer(tmp_path_factory: pytest.TempPathFactory) -> Recognizer:
    """One yunet + dlib-onnx recognizer for the whole suite (models load once)."""
    need(MODELS / "face_detection_yunet_2023mar.onnx")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEPRINT_HOME", str(tmp_path_factory.mktemp("fphome-gallery")))
        mp.setenv("FACEPRINT_MODELS", str(MODELS))
        mp.setenv("FACEPRINT_OFFLINE", "1")
        mp.delenv("FACEPRINT_DETECTOR", raising=False)
        mp.delenv("FACEPRINT_EMBEDDER", raising=False)
        return Recognizer()


@pytest.fixture(params=["sqlite", "postgres"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A callable that makes a fresh, empty store of the parametrised backend."""
    made: list[Store] = []
    counter = itertools.count()

    def make() -> Store:
        if request.param == "sqlite":
            from faceprint.gallery.sqlite import SqliteStore

            store: Store = SqliteStore(tmp_path / f"gallery{next(counter)}.sqlite")
        elif request.param == "postgres":  # a throwaway pgserver, one database per store
            from faceprint.gallery.postgres import PostgresStore

            from .pg import shared_server

            store = PostgresStore(shared_server().create_database())
        else:  # pragma: no cover - other backends add their branch here
            raise AssertionError(f"unknown backend {request.param}")
        made.append(store)
        return store

    yield make
    for s in made:
        s.close()


@pytest.fixture
def gallery(store_factory: StoreFactory, recognizer: Recognizer) -> Gallery:
    """An empty gallery on a fresh store."""
    return Gallery(store_factory(), recognizer)


@pytest.fixture
def knn_gallery(gallery: Gallery) -> Gallery:
    """The face_recognition knn ``train`` folder enrolled (5 people, 9 photos)."""
    need(KNN)
    reports = gallery.enroll_dir(KNN / "train")
    assert all(r.ok and not r.refused for r in reports), [r.to_dict() for r in reports]
    return gallery
