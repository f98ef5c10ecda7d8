"""The Streams section against a real service: start the Hamilton clip from the
operator's allow-list and watch its events arrive live (read with fetch() and the
X-API-Key header, since EventSource cannot send it and a key never goes in a URL),
until Lin-Manuel Miranda is identified and the run ends. Skipped while the service has
no streams routes (the section then says so, which test_page checks).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable

import pytest
from tests.browser.conftest import VIDEO, Pages, Server, go, sign_in, wait
from tests.conftest import need

CLIP = VIDEO / "short_hamilton_clip.mp4"
LIN = "lin-manuel-miranda"


def test_start_a_stream_and_watch_its_events_live(serve: Callable[..., Server], pages: Pages) -> None:
    server = serve("--stream", str(need(CLIP)))
    with urllib.request.urlopen(server.url + "openapi.json", timeout=10) as res:
        if "/v1/streams" not in json.load(res)["paths"]:
            pytest.skip("this service has no /v1/streams yet")
    server.enrol(LIN, need(VIDEO / "refs" / f"{LIN}.png"))
    page, _ = pages.open()
    sign_in(page, server)
    go(page, "Streams")
    source = page.get_by_label("Source")
    source.locator("option").first.wait_for(state="attached")
    assert source.locator("option").count() == 1
    page.get_by_role("button", name="Start", exact=True).click()

    events = page.locator("#stream-events")
    wait(page, events.locator("li[data-event='run_started']"))
    wait(page, events.locator(f"li[data-event='identified'][data-name='{LIN}']"), timeout=60_000)
    pages.shot(page, "streams-watching")
    wait(page, events.locator("li[data-event='run_ended']"), timeout=60_000)
    page.locator("#streams-list li[data-state='ended']").wait_for()
    assert "The event stream ended." in events.inner_text()
    pages.shot(page, "streams-ended")
