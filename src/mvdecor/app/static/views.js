/*
 * mvdecor labelling app: painting views (the paper's labelled 2D views). Loaded after app.js,
 * whose window.mvdecorApp gives the server calls, the label set, the active label and the tool.
 *
 * "paint views" covers the 3D view with a few views of the current shape, rendered on the server
 * with the cameras fine-tuning uses; the brush paints labels on the object's pixels (the image's
 * alpha is the object), the eraser clears them, undo/redo step back over strokes, and save writes
 * label_images/<shape>/view_<N>.png, the label PNG `mvdecor finetune --label-images` reads.
 * Unsaved strokes are saved before another view or mesh is shown or the panel is closed; when that
 * save fails (a conflict, a server error), the page stays on the view and says why ("discard
 * strokes" then drops them).
 *
 * State for tests in <body>: data-views ("closed", "loading", "open"), data-view-shape and
 * data-view (the mesh and view shown), data-view-labelled (its labelled pixels), data-view-dirty
 * (unsaved strokes).
 */
(function () {
  "use strict";

  var app = window.mvdecorApp;
  var $ = function (id) { return document.getElementById(id); };
  var IGNORE = 255;
  var vs = {
    open: false, shape: null, list: [], size: 0, index: null, version: "none",
    labels: null, mask: null, base: null, dirty: false, undo: [], redo: [], stroke: null,
    edits: 0, saving: null, // edits: counts changes, so a save does not clear strokes made while it ran
  };
  var canvas = $("views-canvas"), ctx = canvas.getContext("2d");

  function url(path) { return path + (app.token ? "?token=" + encodeURIComponent(app.token) : ""); }
  function viewPath(index) { return "api/meshes/" + encodeURIComponent(vs.shape) + "/views/" + index; }

  function setBody() {
    var labelled = 0;
    if (vs.labels) for (var i = 0; i < vs.labels.length; i++) if (vs.labels[i] !== IGNORE) labelled++;
    document.body.dataset.views = vs.open ? (vs.labels ? "open" : "loading") : "closed";
    document.body.dataset.view = vs.index === null ? "" : String(vs.index);
    document.body.dataset.viewShape = vs.open && vs.shape ? vs.shape : "";
    document.body.dataset.viewLabelled = String(labelled);
    document.body.dataset.viewDirty = String(vs.dirty);
    $("views-undo").disabled = !vs.undo.length;
    $("views-redo").disabled = !vs.redo.length;
    $("views-save").disabled = !vs.dirty;
    $("views-discard").disabled = !vs.dirty;
    $("views-status").textContent = vs.index === null ? "" : vs.shape + ", view " + vs.index + ": " + labelled +
      " labelled pixels" + (vs.dirty ? ", unsaved" : "");
  }

  function loadImage(src) {
    return new Promise(function (resolve, reject) {
      var image = new Image();
      image.onload = function () { resolve(image); };
      image.onerror = function () { reject(new Error("view image not loaded")); };
      image.src = src;
    });
  }

  function openPanel() {
    var cur = app.state.current;
    if (!cur) { app.say("open a mesh first", true); return Promise.resolve(); }
    return saveView("mesh " + cur.id).then(function (saved) { if (saved) listViews(cur); });
  }

  function listViews(cur) {
    vs.open = true; vs.shape = cur.id; vs.labels = null; vs.index = null; vs.dirty = false;
    $("views-panel").style.display = "flex";
    $("views-toggle").classList.add("on");
    setBody();
    app.api("GET", "api/meshes/" + encodeURIComponent(vs.shape) + "/views").then(function (listing) {
      vs.list = listing.views; vs.size = listing.width;
      canvas.width = listing.width; canvas.height = listing.height;
      var strip = $("views-strip");
      strip.innerHTML = "";
      listing.views.forEach(function (v) {
        var thumb = document.createElement("img");
        thumb.src = url(viewPath(v.index) + "/image");
        thumb.title = "view " + v.index + (v.painted ? " (painted)" : "");
        thumb.dataset.index = String(v.index);
        thumb.className = v.painted ? "painted" : "";
        thumb.addEventListener("click", function () { showView(v.index); });
        strip.appendChild(thumb);
      });
      return loadView(listing.views[0].index);
    }).catch(function (err) { app.say("views: " + err.message, true); });
  }

  function closePanel() {
    return saveView("the 3D view").then(function (saved) {
      if (!saved) return;
      vs.open = false; vs.dirty = false; vs.labels = null; vs.index = null;
      $("views-panel").style.display = "none";
      $("views-toggle").classList.remove("on");
      setBody();
    });
  }

  /** Show view `index`, after saving the strokes of the one shown (stays there if that fails). */
  function showView(index) {
    return saveView("view " + index).then(function (saved) { if (saved) return loadView(index); });
  }

  function loadView(index) {
    return Promise.all([
      loadImage(url(viewPath(index) + "/image")),
      app.api("GET", viewPath(index) + "/labels"),
    ]).then(function (got) {
      ctx.clearRect(0, 0, vs.size, vs.size);
      ctx.drawImage(got[0], 0, 0);
      vs.base = ctx.getImageData(0, 0, vs.size, vs.size);
      var n = vs.size * vs.size;
      vs.mask = new Uint8Array(n);
      for (var i = 0; i < n; i++) vs.mask[i] = vs.base.data[4 * i + 3] > 0 ? 1 : 0;
      vs.labels = app.decode(got[1].labels, Uint8Array).slice();
      vs.version = got[1].version; vs.index = index; vs.dirty = false; vs.undo = []; vs.redo = []; vs.edits++;
      document.querySelectorAll("#views-strip img").forEach(function (t) { t.classList.toggle("current", t.dataset.index === String(index)); });
      redraw();
      setBody();
    }).catch(function (err) { app.say("view " + index + ": " + err.message, true); });
  }

  function redraw() {
    if (!vs.labels) return;
    var out = ctx.createImageData(vs.size, vs.size), src = vs.base.data, dst = out.data;
    for (var i = 0; i < vs.labels.length; i++) {
      var label = vs.labels[i], j = 4 * i;
      if (label === IGNORE || !vs.mask[i]) {
        dst[j] = src[j]; dst[j + 1] = src[j + 1]; dst[j + 2] = src[j + 2];
        dst[j + 3] = vs.mask[i] ? 255 : 0;
      } else { // the label's colour, shaded by the view so the shape stays readable
        var rgb = app.rgbOf(label), shade = src[j] / 255;
        dst[j] = rgb[0] * (0.35 + 0.65 * shade); dst[j + 1] = rgb[1] * (0.35 + 0.65 * shade);
        dst[j + 2] = rgb[2] * (0.35 + 0.65 * shade); dst[j + 3] = 255;
      }
    }
    ctx.putImageData(out, 0, 0);
  }

  // --------------------------------------------------------------- painting
  function pixelsUnder(event) {
    var rect = canvas.getBoundingClientRect(), scale = vs.size / rect.width;
    var cx = (event.clientX - rect.left) * scale, cy = (event.clientY - rect.top) * scale;
    var r = Math.max(Number($("radius").value) * scale, 0.5), found = [];
    var x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(vs.size - 1, Math.ceil(cx + r));
    var y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(vs.size - 1, Math.ceil(cy + r));
    for (var y = y0; y <= y1; y++) {
      for (var x = x0; x <= x1; x++) {
        var dx = x + 0.5 - cx, dy = y + 0.5 - cy;
        if (dx * dx + dy * dy <= r * r && vs.mask[y * vs.size + x]) found.push(y * vs.size + x);
      }
    }
    return found;
  }

  function paint(event) {
    var value = vs.stroke.value, changed = false;
    pixelsUnder(event).forEach(function (p) {
      if (vs.labels[p] === value) return;
      if (!vs.stroke.pixels.has(p)) vs.stroke.pixels.set(p, vs.labels[p]);
      vs.labels[p] = value;
      changed = true;
    });
    if (changed) { vs.dirty = true; vs.edits++; redraw(); setBody(); }
  }

  canvas.addEventListener("pointerdown", function (event) {
    if (!vs.labels || event.button !== 0) return;
    var erase = app.state.erase;
    if (!erase && !app.state.labelSet.names.length) { app.say("add a label first", true); return; }
    canvas.setPointerCapture(event.pointerId);
    vs.stroke = { pixels: new Map(), value: erase ? IGNORE : app.state.active };
    paint(event);
  });
  canvas.addEventListener("pointermove", function (event) { if (vs.stroke) paint(event); });
  canvas.addEventListener("pointerup", function () {
    var stroke = vs.stroke;
    vs.stroke = null;
    if (!stroke || !stroke.pixels.size) return;
    vs.undo.push({ pixels: Int32Array.from(stroke.pixels.keys()), old: Uint8Array.from(stroke.pixels.values()), value: stroke.value });
    if (vs.undo.length > 100) vs.undo.shift();
    vs.redo = [];
    setBody();
  });

  function undo(redo) {
    var from = redo ? vs.redo : vs.undo, to = redo ? vs.undo : vs.redo, step = from.pop();
    if (!step) return;
    for (var i = 0; i < step.pixels.length; i++) vs.labels[step.pixels[i]] = redo ? step.value : step.old[i];
    to.push(step);
    vs.dirty = true; vs.edits++;
    redraw();
    setBody();
  }

  function toBase64(bytes) {
    var text = "";
    for (var i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(text);
  }

  /**
   * Save the strokes of the view shown, if it has unsaved ones. A promise of true when nothing is
   * left unsaved, of false when the save failed: the strokes stay, and the message says why and
   * what waits (`next`: "view 3", "mesh b", "the 3D view"; none for a plain save).
   */
  function saveView(next) {
    if (vs.saving) return vs.saving.then(function () { return saveView(next); });
    if (!vs.labels || !vs.dirty) return Promise.resolve(true);
    var shape = vs.shape, index = vs.index, edits = vs.edits;
    vs.saving = app.api("PUT", viewPath(index) + "/labels", { version: vs.version, labels: toBase64(vs.labels) }).then(function (reply) {
      vs.saving = null;
      vs.version = reply.version;
      vs.dirty = vs.edits !== edits; // strokes made while saving stay unsaved
      var thumb = document.querySelector("#views-strip img[data-index='" + index + "']");
      if (thumb) thumb.className = (reply.painted ? "painted" : "") + " current";
      setBody();
      app.say("saved view " + index + " of " + shape + (reply.painted ? " (label_images/" + shape + "/view_" + index + ".png)" : " (erased)"));
      return !vs.dirty || saveView(next);
    }, function (err) {
      vs.saving = null;
      var why = err.status === 409 ? err.message : err.message + ".";
      app.say("View " + index + " of " + shape + " not saved: " + why + (next ? " You are still on it, not on " + next + ":" : "") +
        " your strokes are kept; save again, or discard them.", true);
      return false;
    });
    return vs.saving;
  }

  function save() { saveView(); }

  /** Drop the unsaved strokes: the view as saved. */
  function discard() {
    if (vs.index === null) return;
    vs.dirty = false;
    loadView(vs.index).then(function () { app.say("discarded the unsaved strokes of view " + vs.index); });
  }

  $("views-toggle").addEventListener("click", function () { if (vs.open) closePanel(); else openPanel(); });
  $("views-close").addEventListener("click", closePanel);
  $("views-undo").addEventListener("click", function () { undo(false); });
  $("views-redo").addEventListener("click", function () { undo(true); });
  $("views-save").addEventListener("click", save);
  $("views-discard").addEventListener("click", discard);
  // While the panel is open, Ctrl+Z/Y/S act on the view, not on the mesh behind it.
  window.addEventListener("keydown", function (event) {
    if (!vs.open || !(event.ctrlKey || event.metaKey)) return;
    var key = event.key.toLowerCase();
    if (key !== "z" && key !== "y" && key !== "s") return;
    event.preventDefault();
    event.stopPropagation();
    if (key === "s") save(); else undo(key === "y" || event.shiftKey);
  }, true);
  // Another mesh: the strokes are saved first, and the mesh stays when that fails.
  app.beforeMeshChange.push(function (id) { return !vs.open || id === vs.shape || saveView("mesh " + id); });
  app.onMeshOpened.push(function () { if (vs.open && app.state.current.id !== vs.shape) openPanel(); });
  window.addEventListener("beforeunload", function (event) { if (vs.dirty) { event.preventDefault(); event.returnValue = ""; } });
  app.onLabelsChanged.push(redraw);
  setBody();
})();
