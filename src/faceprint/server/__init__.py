"""``faceprint serve``: the REST service and its web page (``pip install 'faceprint[server]'``).

Layout: :mod:`.config` (what a process is configured with, every limit), :mod:`.engine`
(the state one process holds, how blocking work runs), :mod:`.servicedb` (keys and audit
log, SQLite), :mod:`.keys` and :mod:`.auth` (API keys, roles), :mod:`.limits` (body size,
in-flight requests, rate per key), :mod:`.uploads` (multipart images), :mod:`.problems`
(every error as a problem document), :mod:`.app` (the FastAPI app), ``routes/`` (one
module per resource) and ``static/`` (the page: plain HTML, CSS and JavaScript, served
locally, no build step).

Nothing here is imported by ``import faceprint``; FastAPI and uvicorn are needed only for
the service.
"""
