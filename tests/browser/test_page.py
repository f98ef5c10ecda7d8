"""The web page in a real Chromium against a real ``faceprint serve``: sign in, enrol
through the People section, identify an uploaded photo and read the name drawn, rename,
delete after a confirmation, and identify ``unknown`` afterwards; the page at phone width;
reports shown under their own CSP; no console errors anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.browser.conftest import KNN, Pages, Server, go, sign_in, wait
from tests.conftest import need

OBAMA = KNN / "obama" / "obama.jpg"
OBAMA2 = KNN / "obama" / "obama2.jpg"


def identify(page: Any, photo: Path) -> Any:
    """Upload ``photo`` on the Identify section; answers its result's face list items."""
    go(page, "Identify")
    page.get_by_label("Photos to identify").set_input_files(str(photo))
    page.get_by_role("button", name="Identify", exact=True).click()
    faces = page.locator(f"#identify-results figure[data-image='{photo.name}'] li[data-label]")
    wait(page, faces.first)
    return faces


def person_row(page: Any, name: str) -> Any:
    return page.locator("#people-list li.person").filter(has=page.locator(".name", has_text=name))


def test_enrol_identify_rename_delete_through_the_page(server: Server, pages: Pages) -> None:
    need(OBAMA2)
    page, console = pages.open()
    page.goto(server.url)
    pages.shot(page, "01-signin")

    # a wrong key is refused with the service's problem document, shown on the page
    console.expect("401")
    page.get_by_label("API key").fill("fpk_000000000000_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    error = page.locator("#messages .msg.error")
    error.wait_for()
    assert "401" in error.inner_text()
    assert page.evaluate("sessionStorage.length") == 0
    sign_in(page, server)
    assert page.locator("#who-role").inner_text() == "admin"
    assert server.key not in page.url
    assert page.evaluate("Object.values(sessionStorage)") == [server.key]

    # enrol obama with a photo, through the People section
    go(page, "People")
    page.get_by_label("Name", exact=True).fill("obama")
    page.get_by_label("Photos (one face each)").set_input_files(str(OBAMA))
    page.get_by_role("button", name="Add person").click()
    row = wait(page, person_row(page, "obama"))
    assert "1 face" in row.locator(".count").inner_text()
    assert "Added obama" in page.locator("#messages").inner_text()
    pages.shot(page, "02-people")

    # a taken name is refused with the problem document's words, and nothing is added
    page.get_by_label("Name", exact=True).fill("obama")
    page.get_by_role("button", name="Add person").click()
    page.locator("#messages .msg.error", has_text="409").wait_for()
    console.expect("409")
    assert person_row(page, "obama").count() == 1

    # search
    page.get_by_label("Search by name").fill("zzz")
    page.get_by_role("button", name="Search").click()
    page.locator("#people-total", has_text="0 people match").wait_for()
    page.get_by_label("Search by name").fill("BAM")
    page.get_by_role("button", name="Search").click()
    page.locator("#people-total", has_text="1 person match").wait_for()
    assert person_row(page, "obama").count() == 1

    # rename (keyboard: Enter saves)
    person_row(page, "obama").get_by_role("button", name="Rename: obama").click()
    field = page.get_by_label("New name for obama")
    field.fill("Barack Obama")
    field.press("Enter")
    page.get_by_label("Search by name").fill("")
    page.get_by_role("button", name="Search").click()
    person_row(page, "Barack Obama").wait_for()

    # identify another photo of him: the name is on the page, drawn over the face
    faces = identify(page, OBAMA2)
    assert faces.count() == 1
    assert faces.first.get_attribute("data-label") == "Barack Obama"
    assert "Barack Obama" in faces.first.inner_text()
    op = page.locator("#identify-op")
    assert "threshold" in op.inner_text() and "people\n1" in op.inner_text().replace(" ", "\n")
    canvas = page.locator("#identify-results figure canvas")
    assert canvas.get_attribute("aria-label") == "obama2.jpg: Barack Obama"
    pages.shot(page, "03-identify-known")

    # delete: Escape cancels the confirmation, the confirmation button deletes
    go(page, "People")
    row = person_row(page, "Barack Obama")
    row.get_by_role("button", name="Delete: Barack Obama").click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    assert "1 enrolled face" in dialog.inner_text()
    pages.shot(page, "04-confirm-delete")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    assert person_row(page, "Barack Obama").count() == 1
    row.get_by_role("button", name="Delete: Barack Obama").click()
    dialog.get_by_role("button", name="Delete").click()
    page.locator("#people-total", has_text="0 people enrolled").wait_for()
    assert person_row(page, "Barack Obama").count() == 0
    status, listed = server.call("GET", "/v1/people")
    assert status == 200 and listed["total"] == 0

    # identify again: unknown
    faces = identify(page, OBAMA2)
    assert [faces.nth(i).get_attribute("data-label") for i in range(faces.count())] == ["unknown"]
    pages.shot(page, "05-identify-unknown")

    # sign out forgets the key
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("API key").wait_for()
    assert page.evaluate("sessionStorage.length") == 0


def _no_horizontal_overflow(page: Any) -> None:
    wide = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth, "
        "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > "
        "document.documentElement.clientWidth + 1 && e.offsetParent !== null).map(e => e.tagName + "
        "'#' + e.id + '.' + e.className).slice(0, 5)]"
    )
    assert wide[0] <= wide[1], f"the page is wider than the screen: {wide}"


REPORT = """<!doctype html><html><head><meta charset="utf-8"><title>r</title>
<style>h1 { color: rgb(1, 2, 3); }</style></head><body>
<h1>Verification report</h1><p style="color: rgb(4, 5, 6)" id="styled">inline style</p>
<img alt="dot" src="data:image/png;base64,{DOT}">
</body></html>"""
DOT = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def test_every_section_at_phone_width_without_overflow_or_errors(server: Server, pages: Pages) -> None:
    (server.root / "reports" / "lfw-report.html").write_text(REPORT.replace("{DOT}", DOT), encoding="utf-8")
    server.enrol("obama", OBAMA)
    page, _ = pages.open(width=375, height=812)
    page.goto(server.url)
    _no_horizontal_overflow(page)
    pages.shot(page, "phone-01-signin")
    sign_in(page, server)

    faces = identify(page, OBAMA2)
    assert faces.first.get_attribute("data-label") == "obama"
    _no_horizontal_overflow(page)
    pages.shot(page, "phone-02-identify")

    go(page, "People")
    person_row(page, "obama").wait_for()
    _no_horizontal_overflow(page)
    pages.shot(page, "phone-03-people")

    go(page, "Streams")
    page.locator("#streams-unavailable:not([hidden]), #streams-ui:not([hidden])").wait_for()
    _no_horizontal_overflow(page)
    pages.shot(page, "phone-04-streams")

    go(page, "Evaluation")
    page.get_by_role("button", name="lfw-report.html").click()
    frame = page.frame_locator("#report-frame").frame_locator("#report")
    heading = frame.locator("h1")
    heading.wait_for()
    # the report's own CSS applies (inline <style> and style attributes): the viewer's CSP
    assert heading.evaluate("e => getComputedStyle(e).color") == "rgb(1, 2, 3)"
    assert frame.locator("#styled").evaluate("e => getComputedStyle(e).color") == "rgb(4, 5, 6)"
    assert frame.locator("img").evaluate("e => e.naturalWidth") == 1
    # ...and it runs sandboxed: no script, an opaque origin
    assert page.locator("#report-frame").get_attribute("sandbox") is None  # the viewer: our own code
    viewer = page.frame_locator("#report-frame").locator("#report")
    assert viewer.get_attribute("sandbox") == ""
    _no_horizontal_overflow(page)
    pages.shot(page, "phone-05-reports")


def test_keyboard_only_sign_in_and_navigation(server: Server, pages: Pages) -> None:
    page, _ = pages.open()
    page.goto(server.url)
    page.keyboard.press("Tab")  # the skip link
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "signin-key"
    page.keyboard.type(server.key)
    page.keyboard.press("Enter")
    page.locator("#who-name").wait_for()
    # the tabs are links: reach People by Tab and open it with Enter; focus lands on its heading
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "People":
            break
    page.keyboard.press("Enter")
    page.locator("#view-people:not([hidden])").wait_for()
    assert page.evaluate("document.activeElement.id") == "people-title"


def test_event_stream_parser_in_the_browser(server: Server, pages: Pages) -> None:
    """The page reads Server-Sent Events with fetch() (EventSource cannot send the key):
    its parser must cope with chunks split anywhere (a CRLF too), comments, multi-line
    data, and drop an event the stream cut off."""
    page, _ = pages.open()
    page.goto(server.url)
    for size in (1, 7, 4096):
        got = page.evaluate(
            """async (size) => {
                const { readEvents } = await import('/static/streams.js');
                const text = ': hello\\r\\nevent: track_started\\r\\ndata: {"event": "track_started",\\r\\n'
                  + 'data:  "track_id": 1}\\r\\n\\r\\ndata: {"event":"identified","name":"Zoë"}\\n\\n'
                  + 'data: cut off';
                const bytes = new TextEncoder().encode(text);
                const body = new ReadableStream({ start(c) {
                  for (let i = 0; i < bytes.length; i += size) c.enqueue(bytes.slice(i, i + size));
                  c.close();
                } });
                const out = [];
                await readEvents(body, (name, data) => out.push([name, data]));
                return out;
            }""",
            size,
        )
        assert got == [
            ["track_started", '{"event": "track_started",\n "track_id": 1}'],
            ["message", '{"event":"identified","name":"Zoë"}'],
        ], size


def test_a_read_key_sees_people_but_cannot_change_or_identify(server: Server, pages: Pages) -> None:
    server.enrol("obama", OBAMA)
    key = server.create_key("read", "viewer")
    page, _ = pages.open()
    page.goto(server.url)
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#who-role").wait_for()
    assert page.locator("#who-role").inner_text() == "read"
    assert page.get_by_role("button", name="Identify", exact=True).is_disabled()
    assert page.get_by_role("button", name="Start camera").is_disabled()
    assert page.get_by_text("Your key's role may not identify").first.is_visible()
    go(page, "People")
    row = person_row(page, "obama")
    row.wait_for()
    assert row.get_by_role("button", name="Delete: obama").is_disabled()
    assert page.get_by_role("button", name="Add person").is_disabled()
    pages.shot(page, "read-key-people")
    go(page, "Streams")
    page.locator("#streams-unavailable:not([hidden]), #streams-ui:not([hidden])").wait_for()
    go(page, "Evaluation")
    page.locator("#reports-empty").wait_for()
