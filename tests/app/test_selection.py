"""The lasso and polygon selections (static/selection.js) in a real (headless) browser."""

from __future__ import annotations

import itertools

from mvdecor.app.folder import AppFolder

#: The faces whose index covers at least 500 pixels of the page's face-index buffer: the visible
#: sides of the boxes. (Back faces show there too, along the silhouette edges they share with front
#: faces, where the depths tie; a selection leaves them out.)
VISIBLE_FACES = """(() => {
    const app = window.mvdecorApp, size = app.pickSize();
    const pixels = new Uint8Array(4 * size.width * size.height), count = new Map();
    app.readPick(0, 0, size.width, size.height, pixels);
    for (let i = 0; i < pixels.length; i += 4) {
        const id = pixels[i] | (pixels[i + 1] << 8) | (pixels[i + 2] << 16);
        if (id > 0) count.set(id - 1, (count.get(id - 1) || 0) + 1);
    }
    return [...count].filter(([face, pixels]) => pixels >= 500).map(([face]) => face).sort((a, b) => a - b);
})()"""
LABELLED_FACES = "[...mvdecorApp.state.current.labels].flatMap((label, face) => label >= 0 ? [face] : [])"


def _key(browser, key: str, code: str | None = None) -> None:
    extra = (
        {"text": key}
        if len(key) == 1
        else {"code": code or key, "windowsVirtualKeyCode": {"Enter": 13, "Escape": 27}[key]}
    )
    browser.send("Input.dispatchKeyEvent", type="keyDown", key=key, **extra)
    browser.send("Input.dispatchKeyEvent", type="keyUp", key=key)


def _canvas(browser) -> tuple[float, float, float, float]:
    return tuple(browser.evaluate(
        "(() => { const r = document.getElementById('view').getBoundingClientRect();"
        " return [r.left, r.top, r.width, r.height]; })()"
    ))  # fmt: skip


def _labelled(browser) -> int:
    return int(browser.evaluate("document.body.dataset.labelled"))


def _lasso(browser, corners: list[tuple[float, float]], check_overlay: bool = False) -> None:
    """Drag the lasso through ``corners`` (and a few points on each side)."""
    browser.mouse("mousePressed", *corners[0])
    for (x0, y0), (x1, y1) in itertools.pairwise([*corners, corners[0]]):
        for step in range(1, 5):
            browser.mouse("mouseMoved", x0 + (x1 - x0) * step / 4, y0 + (y1 - y0) * step / 4)
    if check_overlay:  # the outline is drawn while the lasso is
        assert browser.evaluate("document.body.dataset.selecting") == "lasso"
        shown = browser.evaluate(
            "[getComputedStyle(document.getElementById('selection-overlay')).display,"
            " document.getElementById('selection-shape').getAttribute('points').split(' ').length]"
        )
        assert shown[0] == "block" and shown[1] >= 12
    browser.mouse("mouseReleased", *corners[0], buttons=0)


def _click(browser, x: float, y: float, count: int = 1) -> None:
    for kind in ("mousePressed", "mouseReleased"):
        browser.send(
            "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
            buttons=1 if kind == "mousePressed" else 0, clickCount=count,
        )  # fmt: skip


def test_lasso_and_polygon_label_the_faces_inside_as_one_undo_step(server, folder, browser):
    browser.open(server + "#mesh=b")
    browser.wait_for("document.body.dataset.app === 'ready' && document.body.dataset.mesh === 'b'")
    browser.wait_for("document.body.dataset.fillReady === 'true'")
    left, top, width, height = _canvas(browser)
    around = [(left + 4, top + 4), (left + width - 4, top + 4), (left + width - 4, top + height - 4),
              (left + 4, top + height - 4)]  # fmt: skip
    # A lasso around the whole mesh labels exactly its visible faces ("back", label 2's key).
    _key(browser, "2")
    _key(browser, "l")
    _lasso(browser, around, check_overlay=True)
    visible = browser.evaluate(VISIBLE_FACES)
    assert 0 < len(visible) < 24
    assert browser.evaluate(LABELLED_FACES) == visible
    assert int(browser.evaluate("document.body.dataset.selection")) == len(visible)
    assert browser.evaluate("document.body.dataset.selecting") == ""
    assert (
        browser.evaluate("getComputedStyle(document.getElementById('selection-overlay')).display") == "none"
    )
    # One undo step takes it all back.
    browser.evaluate("document.getElementById('undo').click()")
    assert _labelled(browser) == 0 and browser.evaluate("document.getElementById('undo').disabled")
    # With hidden faces too, every face.
    browser.evaluate("document.getElementById('through').click()")
    _lasso(browser, around)
    assert _labelled(browser) == 24
    browser.evaluate("document.getElementById('through').click()")
    # The polygon (G) with the eraser on (E): four corners around the middle, Enter closes it.
    cx, cy = left + width / 2, top + height / 2
    _key(browser, "e")
    _key(browser, "g")
    for dx, dy in ((-60, -60), (60, -60), (60, 60), (-60, 60)):
        _click(browser, cx + dx, cy + dy)
    assert browser.evaluate("document.body.dataset.selecting") == "polygon"
    _key(browser, "Enter")
    erased = 24 - _labelled(browser)
    assert 0 < erased <= len(visible) and int(browser.evaluate("document.body.dataset.selection")) == erased
    # Escape cancels a polygon in progress (and leaves the tool as it was).
    _key(browser, "1")  # a label: the eraser goes off
    assert browser.evaluate("document.body.dataset.erase") == "false"
    _click(browser, cx - 60, cy - 60)
    _click(browser, cx + 60, cy - 60)
    _key(browser, "Escape")
    assert browser.evaluate("document.body.dataset.selecting") == "" and _labelled(browser) == 24 - erased
    assert browser.evaluate("document.querySelector('[data-tool=polygon]').classList.contains('on')")
    # A double-click closes a polygon too: the erased middle gets label 1.
    for dx, dy in ((-60, -60), (60, -60), (60, 60)):
        _click(browser, cx + dx, cy + dy)
    _click(browser, cx - 60, cy + 60)
    _click(browser, cx - 60, cy + 60, count=2)
    browser.wait_for("document.body.dataset.labelled === '24'")
    browser.send("Input.dispatchKeyEvent", type="keyDown", key="s", code="KeyS", modifiers=2)
    browser.wait_for("document.body.dataset.dirty === 'false'")
    assert browser.console == []
    labels, _ = AppFolder(folder).read_labels("b")
    assert (labels >= 0).all() and (labels == 0).sum() == erased and (labels == 1).sum() == 24 - erased
