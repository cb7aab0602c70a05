"""The page in a real (headless) browser: it draws, the brush paints visible faces, save writes them."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn
from browser import Browser

from browser_support import chromium_or_skip
from mvdecor.app.folder import AppFolder
from mvdecor.app.server import create_app


@pytest.fixture
def server(folder):
    """The app served by uvicorn on a free loopback port, in a thread; yields its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(folder), host="127.0.0.1", port=port, log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not running.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    running.should_exit = True
    thread.join(10)


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
    from mvdecor.train.finetune import read_label_image

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
        x, y = browser.evaluate("""(() => {
            const c = document.getElementById('views-canvas'), r = c.getBoundingClientRect();
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let sx = 0, sy = 0, n = 0;
            for (let i = 0; i < c.width * c.height; i++) if (d[4 * i + 3] > 0) {
                sx += i % c.width; sy += Math.floor(i / c.width); n++; }
            return [r.left + (sx / n + 0.5) * r.width / c.width, r.top + (sy / n + 0.5) * r.height / c.height];
        })()""")  # fmt: skip
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
