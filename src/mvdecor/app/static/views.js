/*
 * mvdecor labelling app: painting views (the paper's labelled 2D views). Loaded after app.js,
 * whose window.mvdecorApp gives the server calls, the label set, the active label and the tool.
 *
 * "paint views" covers the 3D view with a few views of the current shape, rendered on the server
 * with the cameras fine-tuning uses; the brush paints labels on the object's pixels (the image's
 * alpha is the object), the eraser clears them, undo/redo step back over strokes, and save writes
 * label_images/<shape>/view_<N>.png, the label PNG `mvdecor finetune --label-images` reads.
 *
 * State for tests in <body>: data-views ("closed", "loading", "open"), data-view (the view shown),
 * data-view-labelled (its labelled pixels), data-view-dirty (unsaved strokes).
 */
(function () {
  "use strict";

  var app = window.mvdecorApp;
  var $ = function (id) { return document.getElementById(id); };
  var IGNORE = 255;
  var vs = {
    open: false, shape: null, list: [], size: 0, index: null, version: "none",
    labels: null, mask: null, base: null, dirty: false, undo: [], redo: [], stroke: null,
  };
  var canvas = $("views-canvas"), ctx = canvas.getContext("2d");

  function url(path) { return path + (app.token ? "?token=" + encodeURIComponent(app.token) : ""); }
  function viewPath(index) { return "api/meshes/" + encodeURIComponent(vs.shape) + "/views/" + index; }

  function setBody() {
    var labelled = 0;
    if (vs.labels) for (var i = 0; i < vs.labels.length; i++) if (vs.labels[i] !== IGNORE) labelled++;
    document.body.dataset.views = vs.open ? (vs.labels ? "open" : "loading") : "closed";
    document.body.dataset.view = vs.index === null ? "" : String(vs.index);
    document.body.dataset.viewLabelled = String(labelled);
    document.body.dataset.viewDirty = String(vs.dirty);
    $("views-undo").disabled = !vs.undo.length;
    $("views-redo").disabled = !vs.redo.length;
    $("views-save").disabled = !vs.dirty;
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
    if (!cur) { app.say("open a mesh first", true); return; }
    vs.open = true; vs.shape = cur.id; vs.labels = null; vs.index = null;
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
      return showView(listing.views[0].index);
    }).catch(function (err) { app.say("views: " + err.message, true); });
  }

  function closePanel() {
    if (vs.dirty && !window.confirm("Discard the unsaved labels of view " + vs.index + "?")) return;
    vs.open = false; vs.dirty = false; vs.labels = null; vs.index = null;
    $("views-panel").style.display = "none";
    $("views-toggle").classList.remove("on");
    setBody();
  }

  function showView(index) {
    if (vs.dirty && !window.confirm("Discard the unsaved labels of view " + vs.index + "?")) return Promise.resolve();
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
      vs.version = got[1].version; vs.index = index; vs.dirty = false; vs.undo = []; vs.redo = [];
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
    if (changed) { vs.dirty = true; redraw(); setBody(); }
  }

  canvas.addEventListener("pointerdown", function (event) {
    if (!vs.labels || event.button !== 0) return;
    var erase = app.state.tool === "erase";
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
    vs.dirty = true;
    redraw();
    setBody();
  }

  function toBase64(bytes) {
    var text = "";
    for (var i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(text);
  }

  function save() {
    if (!vs.labels || !vs.dirty) return;
    var index = vs.index;
    app.api("PUT", viewPath(index) + "/labels", { version: vs.version, labels: toBase64(vs.labels) }).then(function (reply) {
      vs.version = reply.version; vs.dirty = false;
      var thumb = document.querySelector("#views-strip img[data-index='" + index + "']");
      if (thumb) thumb.className = (reply.painted ? "painted" : "") + " current";
      setBody();
      app.say("saved view " + index + " of " + vs.shape + (reply.painted ? " (label_images/" + vs.shape + "/view_" + index + ".png)" : " (erased)"));
    }).catch(function (err) {
      if (err.status === 409) app.say(err.message + " Your strokes are still here.", true);
      else app.say("view not saved: " + err.message, true);
    });
  }

  $("views-toggle").addEventListener("click", function () { if (vs.open) closePanel(); else openPanel(); });
  $("views-close").addEventListener("click", closePanel);
  $("views-undo").addEventListener("click", function () { undo(false); });
  $("views-redo").addEventListener("click", function () { undo(true); });
  $("views-save").addEventListener("click", save);
  // While the panel is open, Ctrl+Z/Y/S act on the view, not on the mesh behind it.
  window.addEventListener("keydown", function (event) {
    if (!vs.open || !(event.ctrlKey || event.metaKey)) return;
    var key = event.key.toLowerCase();
    if (key !== "z" && key !== "y" && key !== "s") return;
    event.preventDefault();
    event.stopPropagation();
    if (key === "s") save(); else undo(key === "y" || event.shiftKey);
  }, true);
  app.onMeshOpened.push(function () { if (vs.open && app.state.current.id !== vs.shape) { vs.dirty = false; openPanel(); } });
  app.onLabelsChanged.push(redraw);
  setBody();
})();
