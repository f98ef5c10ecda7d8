"""Live recognition from the browser camera: Chromium's fake camera plays a stretch of the
Hamilton clip (converted at test time to .y4m), the page sends a few frames per second
to ``/v1/identify`` and draws the names over the faces.

What the clip holds (looked at frame by frame; cuts at frames 20, 82 and 211): 0-19 the
stage from afar, Lin-Manuel Miranda singing and Alex Lacamoire small at the piano; 20-81
close-ups of Alex Lacamoire in profile and the audience; 82-210 Lin-Manuel Miranda alone,
face about 80 px wide; 211 on the audience (the Obamas among them). The camera plays
frames 90-205: Lin-Manuel Miranda only, so his name must appear, and Alex Lacamoire,
enrolled as a distractor, must never be named.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from tests.browser.conftest import VIDEO, Pages, Server, go, sign_in, wait
from tests.conftest import need

CLIP = VIDEO / "short_hamilton_clip.mp4"
LIN = "lin-manuel-miranda"
ALEX = "alex-lacamoire"
FIRST, LAST = 90, 205  # Lin-Manuel Miranda alone on stage


def clip_to_y4m(src: Path, dst: Path, first: int, last: int) -> tuple[int, int, int]:
    """Frames ``first..last`` of ``src`` as a YUV4MPEG2 file (4:2:0, 30 fps), the format
    Chromium's ``--use-file-for-fake-video-capture`` plays in a loop; answers (frames,
    width, height)."""
    import cv2

    cap = cv2.VideoCapture(str(src))
    frames = 0
    width = height = 0
    try:
        with dst.open("wb") as out:
            index = 0
            while index <= last:
                ok, bgr = cap.read()
                if not ok:
                    break
                if index >= first:
                    height, width = bgr.shape[:2]
                    if frames == 0:
                        out.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
                    out.write(b"FRAME\n")
                    out.write(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes())
                    frames += 1
                index += 1
    finally:
        cap.release()
    return frames, width, height


def labels(page: Any, list_id: str) -> list[str]:
    raw = page.locator(f"#{list_id}").get_attribute("data-labels") or ""
    return [x for x in raw.split("\n") if x]


def test_webcam_names_lin_manuel_miranda_and_nobody_else(
    server: Server, pages: Pages, launch: Any, tmp_path: Path
) -> None:
    need(CLIP)
    y4m = tmp_path / "hamilton.y4m"
    frames, width, height = clip_to_y4m(CLIP, y4m, FIRST, LAST)
    assert frames == LAST - FIRST + 1 and (width, height) == (640, 360)
    server.enrol(LIN, need(VIDEO / "refs" / f"{LIN}.png"))
    server.enrol(ALEX, need(VIDEO / "refs" / f"{ALEX}.png"))

    browser = launch(
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}",
    )
    page, _ = pages.open(browser)
    sign_in(page, server)
    go(page, "Identify")
    page.get_by_role("button", name="Start camera").click()
    began = time.monotonic()
    wait(page, page.locator(f"#webcam-labels li[data-label='{LIN}']"), timeout=45_000)
    found_after = time.monotonic() - began
    pages.shot(page, "webcam-named")

    # the overlay is the frame's size, and the operating point is shown
    overlay = page.locator("#webcam-overlay")
    assert overlay.evaluate("c => [c.width, c.height]") == [width, height]
    assert "threshold" in page.locator("#webcam-op").inner_text()

    # keep watching for more than one loop of the clip (116 frames at 30 fps: 3.9 s)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        now = labels(page, "webcam-labels")
        assert set(now) <= {LIN, "unknown"}, now
        time.sleep(0.2)
    seen = labels(page, "webcam-seen")
    assert LIN in seen and ALEX not in seen, seen
    assert set(seen) <= {LIN, "unknown"}, seen
    counts = page.locator("#webcam-seen").inner_text()
    pages.shot(page, "webcam-after")

    page.get_by_role("button", name="Stop camera").click()
    page.locator("#webcam-stage").wait_for(state="hidden")
    assert page.evaluate("document.getElementById('webcam-video').srcObject") is None
    # webcam snapshots enrol someone through the People section (three of them: a frame
    # where the detector also finds a second, tiny "face" is refused as a group photo)
    go(page, "People")
    page.get_by_label("Name", exact=True).fill("snapshot person")
    page.get_by_role("button", name="Use the webcam").click()
    for n in range(1, 4):
        page.get_by_role("button", name="Take snapshot").click()
        wait(page, page.locator("#snap-list li").nth(n - 1))
        page.wait_for_timeout(300)
    page.get_by_role("button", name="Add person").click()
    row = wait(page, page.locator("#people-list li.person[data-name='snapshot person']"))
    assert re.search(r"\b[123] faces?\b", row.inner_text()), row.inner_text()
    assert page.locator("#snap-panel").is_hidden()  # the camera is closed after adding
    pages.shot(page, "webcam-snapshot-enrolled")
    print(f"\nwebcam: {LIN} named {found_after:.1f} s after the camera started; seen: {counts!r}")
