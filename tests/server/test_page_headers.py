"""The page and its report viewer are served with the headers the browser enforces: the
page under a strict CSP (no inline script or style, never framed), the report viewer
under its own (inline styles for the sandboxed report, framed by the page only)."""

from __future__ import annotations

from tests.server.conftest import Api


def _csp(header: str) -> dict[str, str]:
    return {d.split()[0]: d.strip() for d in header.split(";") if d.strip()}


def test_the_page_is_served_under_a_strict_policy(api: Api) -> None:
    r = api.client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/main.js">' in r.text
    csp = _csp(r.headers["content-security-policy"])
    assert csp["script-src"] == "script-src 'self'"
    assert csp["style-src"] == "style-src 'self'"
    assert csp["frame-ancestors"] == "frame-ancestors 'none'"
    assert csp["frame-src"] == "frame-src 'self'"
    assert r.headers["x-frame-options"] == "DENY"
    for asset in ("main.js", "api.js", "identify.js", "people.js", "streams.js", "reports.js", "style.css"):
        a = api.client.get(f"/static/{asset}")
        assert a.status_code == 200, asset
        assert a.headers["content-type"].split(";")[0] in ("text/javascript", "text/css"), asset


def test_the_report_viewer_allows_inline_styles_only_for_itself(api: Api) -> None:
    r = api.client.get("/static/report.html")
    assert r.status_code == 200
    csp = _csp(r.headers["content-security-policy"])
    assert csp["default-src"] == "default-src 'none'"
    assert csp["script-src"] == "script-src 'self'"
    assert "'unsafe-inline'" in csp["style-src"]
    assert csp["frame-ancestors"] == "frame-ancestors 'self'"
    assert "connect-src" not in csp  # it fetches nothing: the page hands it the report
    assert r.headers["x-frame-options"] == "SAMEORIGIN"
    assert 'sandbox=""' in r.text
