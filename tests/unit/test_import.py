import subprocess
import sys

HEAVY = ("cv2", "dlib", "onnxruntime", "torch", "PIL", "face_recognition_models", "typer", "rich")


def test_import_faceprint_loads_no_heavy_module() -> None:
    code = (
        "import sys, faceprint\n"
        "faceprint.__all__\n"
        f"bad = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"heavy modules imported by 'import faceprint': {out.stdout}"


def test_public_api_resolves() -> None:
    import faceprint

    for name in faceprint.__all__:
        assert getattr(faceprint, name) is not None
