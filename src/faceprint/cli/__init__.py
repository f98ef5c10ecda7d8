"""The ``faceprint`` command line. Only this package writes to stdout or exits."""
