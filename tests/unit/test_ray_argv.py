"""``faceprint index --ray [ADDRESS]``: the optional value click cannot parse."""

from __future__ import annotations

import pytest

from faceprint.cli.collections import ray_argv


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["index", "--ray", "photos"], ["index", "--ray", "local", "photos"]),
        (["index", "photos", "--ray"], ["index", "photos", "--ray", "local"]),
        (["index", "--ray", "--workers", "2", "p"], ["index", "--ray", "local", "--workers", "2", "p"]),
        (["index", "--ray", "10.0.0.5:6379", "p"], ["index", "--ray", "10.0.0.5:6379", "p"]),
        (["index", "--ray", "ray://head:10001", "p"], ["index", "--ray", "ray://head:10001", "p"]),
        (["index", "--ray", "auto", "p"], ["index", "--ray", "auto", "p"]),
        (["index", "p"], ["index", "p"]),
        (["index", "--", "--ray"], ["index", "--", "--ray"]),  # a photo named --ray
    ],
)
def test_bare_ray_means_a_local_runtime(argv: list[str], expected: list[str]) -> None:
    assert ray_argv(argv) == expected
