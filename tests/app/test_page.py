"""The page in a real (headless) browser: it draws, the brush paints visible faces, save writes them."""

from __future__ import annotations

from browser import Browser

from browser_support import chromium_or_skip
from mvdecor.app.folder import AppFolder

#: An EventSource whose stream is refused at once (as a proxy that drops it would).
BROKEN_EVENT_SOURCE = """window.EventSource = class {
    constructor() { this.readyState = 0; setTimeout(() => { this.readyState = 2; this.onerror(new Event('error')); }, 10); }
    addEventListener() {}
    close() { this.readyState = 2; }
}"""
#: The middle of the painted-views canvas's object (its alpha), in page coordinates.
VIEW_OBJECT_POINT = """(() => {
    const c = document.getElementById('views-canvas'), r = c.getBoundingClientRect();
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let sx = 0, sy = 0, n = 0;
    for (let i = 0; i < c.width * c.height; i++) if (d[4 * i + 3] > 0) {
        sx += i % c.width; sy += Math.floor(i / c.width); n++; }
    return [r.left + (sx / n + 0.5) * r.width / c.width, r.top + (sy / n + 0.5) * r.height / c.height];
})()"""


def _stroke(browser, x: float, y: float) -> None:
    browser.mouse("mousePressed", x, y)
    browser.mouse("mouseMoved", x + 8, y + 4)
    browser.mouse("mouseReleased", x + 8, y + 4, buttons=0)


def _open_mesh(browser, shape_id: str) -> None:
    browser.evaluate(
        "[...document.querySelectorAll('#meshes li')]"
        f".find(li => li.firstChild.textContent === '{shape_id}').click()"
    )


def test_brush_fill_undo_and_save_in_a_browser(server, folder, tmp_path):
    browser = Browser(chromium_or_skip(), tmp_path / "profile")
    try:
        browser.open(server)
        browser.wait_for("document.body.dataset.app === 'ready' && document.body.dataset.mesh === 'a'")
        assert browser.evaluate("document.querySelectorAll('#meshes .state').length") == 3
        # Open the unlabelled mesh "b" from the list, pick label 2 ("back") with its key.
        browser.evaluate(
            "[...document.querySelectorAll('#meshes li')].find(li => li.textContent.startsWith('b')).click()"
        )
        browser.wait_for("document.body.dataset.mesh === 'b' && document.body.dataset.labelled === '0'")
        box = browser.evaluate("(() => { const r = document.getElementById('view').getBoundingClientRect();"
                               " return [r.left + r.width / 2, r.top + r.height / 2]; })()")  # fmt: skip
        browser.send("Input.dispatchKeyEvent", type="keyDown", key="2", text="2")
        browser.send("Input.dispatchKeyEvent", type="keyUp", key="2")
        # A short brush stroke across the middle paints some visible faces, not all.
        browser.mouse("mousePressed", *box)
        browser.mouse("mouseMoved", box[0] + 10, box[1] + 5)
        browser.mouse("mouseReleased", box[0] + 10, box[1] + 5, buttons=0)
        painted = int(
            browser.wait_for("document.body.dataset.labelled !== '0' && document.body.dataset.labelled")
        )
        assert 0 < painted < 24
        # Undo empties it again, redo brings it back.
        browser.evaluate("document.getElementById('undo').click()")
        assert browser.evaluate("document.body.dataset.labelled") == "0"
        browser.evaluate("document.getElementById('redo').click()")
        assert int(browser.evaluate("document.body.dataset.labelled")) == painted
        # The fill from the clicked face grows over the flat side (0 degrees) and stops at the box's
        # 90-degree edges: the side's two triangles. Ctrl+S saves. (The fill's adjacency loads
        # after the mesh's first frame.)
        browser.wait_for("document.body.dataset.fillReady === 'true'")
        browser.send("Input.dispatchKeyEvent", type="keyDown", key="1", text="1")
        browser.send("Input.dispatchKeyEvent", type="keyDown", key="f", text="f")
        browser.mouse("mousePressed", *box)
        browser.mouse("mouseReleased", *box, buttons=0)
        browser.send("Input.dispatchKeyEvent", type="keyDown", key="s", code="KeyS", modifiers=2)
        browser.wait_for("document.body.dataset.dirty === 'false'")
        shown = int(browser.evaluate("document.body.dataset.labelled"))
        assert browser.console == []
    finally:
        browser.close()
    labels, _ = AppFolder(folder).read_labels("b")
    # The fill relabelled the clicked side (the brush had painted there too); what the page showed was saved.
    assert labels is not None and (labels == 0).sum() == 2 and (labels >= 0).sum() == shown


def test_segment_the_rest_show_and_accept_in_a_browser(server, folder, tmp_path):
    browser = Browser(chromium_or_skip(), tmp_path / "profile")
    try:
        browser.open(server + "#mesh=c")
        browser.wait_for("document.body.dataset.app === 'ready' && document.body.dataset.mesh === 'c'")
        browser.evaluate("document.getElementById('start-job').click()")
        browser.wait_for("document.getElementById('job-message').textContent.includes('done')")
        # The job reloads the mesh on show: its prediction is shown, since it has no labels yet.
        browser.wait_for("document.getElementById('show-prediction').checked")
        assert browser.evaluate("document.getElementById('accept').disabled") is False
        browser.evaluate("document.getElementById('accept').click()")
        browser.wait_for("document.body.dataset.labelled === '24'")
        browser.wait_for(
            "[...document.querySelectorAll('#meshes li')].some(li => li.textContent === 'ccorrected')"
        )
        assert browser.evaluate("document.body.dataset.jobChannel") == "events"  # the SSE stream
        # When the event stream fails, the page polls instead: the next job still shows its end.
        browser.evaluate(BROKEN_EVENT_SOURCE)
        browser.evaluate("document.getElementById('start-job').click()")
        browser.wait_for(
            "document.body.dataset.jobState === 'done' && document.body.dataset.jobChannel === 'polling'"
        )
        assert "done" in browser.evaluate("document.getElementById('job-message').textContent")
        assert browser.console == []
    finally:
        browser.close()
    labels, _ = AppFolder(folder).read_labels("c")
    assert labels is not None and (labels >= 0).all()


def test_a_label_added_in_the_page_is_saved_with_the_labels_that_use_it(server, folder, tmp_path):
    browser = Browser(chromium_or_skip(), tmp_path / "profile")
    try:
        browser.open(server + "#mesh=b")
        browser.wait_for("document.body.dataset.app === 'ready' && document.body.dataset.mesh === 'b'")
        browser.evaluate("document.getElementById('add-label').click()")
        browser.evaluate("(() => { const inputs = document.querySelectorAll('#labels input[type=text]');"
                         " const last = inputs[inputs.length - 1]; last.value = 'leg';"
                         " last.dispatchEvent(new Event('change')); last.blur(); })()")  # fmt: skip
        x, y = browser.evaluate("(() => { const r = document.getElementById('view').getBoundingClientRect();"
                                " return [r.left + r.width / 2, r.top + r.height / 2]; })()")  # fmt: skip
        browser.mouse("mousePressed", x, y)
        browser.mouse("mouseReleased", x, y, buttons=0)
        browser.wait_for("document.body.dataset.labelled !== '0'")
        browser.evaluate("document.getElementById('save').click()")
        browser.wait_for("document.body.dataset.dirty === 'false'")
        assert browser.console == []
    finally:
        browser.close()
    folder_state = AppFolder(folder)
    assert folder_state.label_set()["names"] == ["seat", "back", "leg"]
    labels, _ = folder_state.read_labels("b")
    assert labels is not None and set(labels[labels >= 0]) == {2}


def test_paint_a_view_undo_and_save_it_as_a_label_image(server, folder, tmp_path):
    from mvdecor.app.views import PaintedViews
    from mvdecor.train.labelled import read_label_image

    browser = Browser(chromium_or_skip(), tmp_path / "profile")
    try:
        browser.open(server + "#mesh=b")
        browser.wait_for("document.body.dataset.app === 'ready' && document.body.dataset.mesh === 'b'")
        browser.send("Input.dispatchKeyEvent", type="keyDown", key="2", text="2")  # label "back"
        browser.evaluate("document.getElementById('views-toggle').click()")
        browser.wait_for("document.body.dataset.views === 'open'")
        assert browser.evaluate("document.querySelectorAll('#views-strip img').length") == 6
        view = int(browser.evaluate("document.body.dataset.view"))
        # Find a pixel of the object on the canvas (its alpha), then a stroke from there.
        x, y = browser.evaluate(VIEW_OBJECT_POINT)
        browser.mouse("mousePressed", x, y)
        browser.mouse("mouseMoved", x + 8, y + 4)
        browser.mouse("mouseReleased", x + 8, y + 4, buttons=0)
        painted = int(
            browser.wait_for(
                "document.body.dataset.viewLabelled !== '0' && document.body.dataset.viewLabelled"
            )
        )
        browser.evaluate("document.getElementById('views-undo').click()")
        assert browser.evaluate("document.body.dataset.viewLabelled") == "0"
        browser.evaluate("document.getElementById('views-redo').click()")
        assert int(browser.evaluate("document.body.dataset.viewLabelled")) == painted
        browser.send("Input.dispatchKeyEvent", type="keyDown", key="s", code="KeyS", modifiers=2)
        browser.wait_for("document.body.dataset.viewDirty === 'false'")
        assert browser.evaluate("document.body.dataset.dirty") == "false"  # the mesh's labels untouched
        assert browser.console == []
    finally:
        browser.close()
    png = folder / "label_images" / "b" / f"view_{view}.png"
    views = PaintedViews(AppFolder(folder))
    labels = read_label_image(png, (views.render.resolution,) * 2, 2)
    mask = views.view("b", view).mask
    assert (labels == 1).sum() == painted and (labels[~mask] == -1).all() and set(labels[labels >= 0]) == {1}


def test_unsaved_view_strokes_are_saved_before_leaving_or_kept_when_that_fails(server, folder, browser):
    import numpy as np
    from PIL import Image

    browser.open(server + "#mesh=b")
    browser.wait_for("document.body.dataset.app === 'ready' && document.body.dataset.mesh === 'b'")
    browser.evaluate("document.getElementById('views-toggle').click()")
    browser.wait_for("document.body.dataset.views === 'open' && document.body.dataset.viewShape === 'b'")
    view = browser.evaluate("document.body.dataset.view")
    _stroke(browser, *browser.evaluate(VIEW_OBJECT_POINT))
    browser.wait_for("document.body.dataset.viewDirty === 'true'")
    # Another mesh: the strokes are saved first, then its views are shown.
    _open_mesh(browser, "c")
    browser.wait_for("document.body.dataset.viewShape === 'c' && document.body.dataset.views === 'open'")
    assert (folder / "label_images" / "b" / f"view_{view}.png").is_file()
    # A save that fails (the view changed on disk meanwhile) keeps the page on the view, saying why.
    _stroke(browser, *browser.evaluate(VIEW_OBJECT_POINT))
    browser.wait_for("document.body.dataset.viewDirty === 'true'")
    size = browser.evaluate("document.getElementById('views-canvas').width")
    other = folder / "label_images" / "c" / f"view_{view}.png"
    other.parent.mkdir()
    Image.fromarray(np.zeros((size, size), np.uint8), "L").save(other)
    _open_mesh(browser, "a")
    browser.wait_for("document.getElementById('message').textContent.includes('not saved')")
    message = browser.evaluate("document.getElementById('message').textContent")
    assert "changed since you loaded it" in message and "still on it" in message
    assert browser.evaluate("[document.body.dataset.mesh, document.body.dataset.viewShape]") == ["c", "c"]
    assert browser.evaluate("document.body.dataset.viewDirty") == "true"
    # Closing the panel is refused the same way; "discard strokes" drops them, then it closes.
    browser.evaluate("document.getElementById('views-close').click()")
    browser.wait_for("document.getElementById('message').textContent.includes('not on the 3D view')")
    assert browser.evaluate("document.body.dataset.views") == "open"
    browser.evaluate("document.getElementById('views-discard').click()")
    browser.wait_for("document.body.dataset.viewDirty === 'false'")
    browser.evaluate("document.getElementById('views-close').click()")
    browser.wait_for("document.body.dataset.views === 'closed'")
    assert [e for e in browser.console if "409" not in e] == []  # the refused saves log a 409


def test_a_malformed_label_set_is_shown_and_replaced_in_the_page(server, folder, browser):
    (folder / "labels.json").write_text('{"labels": ["seat", "seat"]}')
    browser.open(server)
    browser.wait_for("document.body.dataset.app === 'ready' && document.body.dataset.mesh === 'a'")
    assert "duplicate label name" in browser.evaluate("document.body.dataset.labelSetError")
    text = browser.evaluate("document.getElementById('label-set-error-text').textContent")
    assert text.startswith("labels.json: duplicate label name") and "fresh label set" in text
    assert browser.evaluate("getComputedStyle(document.getElementById('label-set-error')).display") == "block"
    assert browser.evaluate("document.getElementById('save-labels-set').disabled")
    browser.evaluate("window.confirm = () => true; document.getElementById('label-set-reset').click()")
    browser.wait_for("document.body.dataset.labelSetError === ''")
    assert browser.evaluate("document.querySelectorAll('#labels .row').length") == 2  # "0", "1" of a's labels
    assert browser.console == []
    backups = list(folder.glob("labels.json.bak-*"))
    assert len(backups) == 1 and backups[0].read_text() == '{"labels": ["seat", "seat"]}'
