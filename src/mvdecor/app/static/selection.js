/*
 * mvdecor labelling app: the lasso and polygon selections. Loaded after app.js, whose
 * window.mvdecorApp gives the camera, the face-index (pick) buffer, the mesh and labelFaces().
 *
 * Lasso (L): drag around faces. Polygon (G): click its corners; a double-click, Enter or a click
 * on the first corner closes it, Backspace removes the last corner, Escape cancels. Either gives
 * the current label (or, with the eraser on, no label) to every face whose centroid projects
 * inside the outline, as one undo step; an SVG overlay shows the outline while it is drawn.
 *
 * Visible faces only, unless "hidden faces too" is ticked. The face-index (pick) buffer is read
 * back once per selection over the outline's bounding box; a face is visible when the index under
 * its centroid is its own, or when its centroid is not behind the face whose index is there (that
 * face's plane, at the same screen point, within two pixels' depth). The second case takes faces
 * too small to cover a pixel centre, and leaves out back faces that share a silhouette edge with
 * front ones (they show in the buffer along that edge, where the depths tie).
 *
 * Speed on large meshes: the centroids are projected to screen pixels once per camera change
 * (kept in typed arrays), the outline is rasterised once into a mask over its bounding box, and
 * each face is then one array look-up (and, for a face whose pixel shows another, one ray-plane
 * intersection); no per-face allocation.
 *
 * State for tests in <body>: data-selecting ("lasso" or "polygon" while an outline is drawn, else
 * empty), data-selection (faces inside the last outline), data-selection-ms (its time).
 */
(function () {
  "use strict";

  var app = window.mvdecorApp, state = app.state, canvas = app.canvas;
  var $ = function (id) { return document.getElementById(id); };
  var overlay = $("selection-overlay"), shape = $("selection-shape"), rubber = $("selection-rubber");
  var MIN_STEP_PX = 2, CLOSE_PX = 8, SAME_PX = 4;

  // The outline being drawn: canvas pixel coordinates (CSS pixels, origin top left).
  var outline = { tool: null, xs: [], ys: [], text: "" };

  // Centroids in screen pixels and their depth, for one camera, mesh and canvas size (NaN: clipped).
  var projected = { centroids: null, matrix: new Float64Array(16), width: 0, height: 0, xy: null, depth: null };
  // Per mesh: each face's reach, the largest distance from its centroid to a corner.
  var reach = { centroids: null, values: null };
  var viewProjection = new THREE.Matrix4();

  // Reused buffers: the outline's mask and scanline crossings, the pick read-back, the faces taken.
  var buffers = { mask: new Uint8Array(0), crossings: new Float64Array(0), pixels: new Uint8Array(0), taken: null };

  function setSelecting() { document.body.dataset.selecting = outline.tool && outline.xs.length ? outline.tool : ""; }

  // ------------------------------------------------------------ projection
  function project() {
    var view = app.view(), camera = app.camera, rect = canvas.getBoundingClientRect();
    camera.updateMatrixWorld();
    viewProjection.multiplyMatrices(camera.projectionMatrix, camera.matrixWorldInverse.copy(camera.matrixWorld).invert());
    var e = viewProjection.elements, same = projected.centroids === view.centroids &&
      projected.width === rect.width && projected.height === rect.height;
    for (var k = 0; k < 16 && same; k++) same = projected.matrix[k] === e[k];
    if (same) return projected.xy;
    var C = view.centroids, F = C.length / 3, W = rect.width, H = rect.height;
    if (!projected.xy || projected.xy.length !== 2 * F) {
      projected.xy = new Float32Array(2 * F); projected.depth = new Float32Array(F);
    }
    var xy = projected.xy, distance = projected.depth;
    for (var f = 0; f < F; f++) {
      var x = C[3 * f], y = C[3 * f + 1], z = C[3 * f + 2];
      var w = e[3] * x + e[7] * y + e[11] * z + e[15];
      var depth = (e[2] * x + e[6] * y + e[10] * z + e[14]) / w;
      distance[f] = w; // the view depth, for a perspective camera
      if (!(w > 0) || depth < -1 || depth > 1) { xy[2 * f] = NaN; xy[2 * f + 1] = NaN; continue; }
      xy[2 * f] = ((e[0] * x + e[4] * y + e[8] * z + e[12]) / w + 1) / 2 * W;
      xy[2 * f + 1] = (1 - (e[1] * x + e[5] * y + e[9] * z + e[13]) / w) / 2 * H;
    }
    projected.centroids = view.centroids; projected.width = W; projected.height = H;
    projected.matrix.set(e);
    return xy;
  }

  // ----------------------------------------------------------- the outline
  /** Rasterise the outline (even-odd) into buffers.mask over the box [x0, x1) x [y0, y1). */
  function rasterise(xs, ys, x0, y0, width, height) {
    var n = xs.length;
    if (buffers.mask.length < width * height) buffers.mask = new Uint8Array(width * height);
    if (buffers.crossings.length < n) buffers.crossings = new Float64Array(n);
    var mask = buffers.mask, crossings = buffers.crossings;
    mask.fill(0, 0, width * height);
    for (var row = 0; row < height; row++) {
      var yc = y0 + row + 0.5, count = 0;
      for (var i = 0, j = n - 1; i < n; j = i++) {
        if ((ys[i] <= yc) !== (ys[j] <= yc)) crossings[count++] = xs[i] + (yc - ys[i]) * (xs[j] - xs[i]) / (ys[j] - ys[i]);
      }
      for (var a = 1; a < count; a++) { // insertion sort: a few crossings per row
        var value = crossings[a], b = a - 1;
        while (b >= 0 && crossings[b] > value) { crossings[b + 1] = crossings[b]; b--; }
        crossings[b + 1] = value;
      }
      for (var c = 0; c + 1 < count; c += 2) { // pixel centres between two crossings are inside
        var from = Math.max(0, Math.ceil(crossings[c] - 0.5) - x0), to = Math.min(width, Math.ceil(crossings[c + 1] - 0.5) - x0);
        if (to > from) mask.fill(1, row * width + from, row * width + to);
      }
    }
  }

  function faceReach() {
    var view = app.view();
    if (reach.centroids === view.centroids) return reach.values;
    var P = view.positions, C = view.centroids, F = C.length / 3, values = new Float32Array(F);
    for (var f = 0; f < F; f++) {
      var largest = 0;
      for (var k = 0; k < 3; k++) {
        var dx = P[9 * f + 3 * k] - C[3 * f], dy = P[9 * f + 3 * k + 1] - C[3 * f + 1], dz = P[9 * f + 3 * k + 2] - C[3 * f + 2];
        largest = Math.max(largest, dx * dx + dy * dy + dz * dz);
      }
      values[f] = Math.sqrt(largest);
    }
    reach.centroids = view.centroids; reach.values = values;
    return values;
  }

  /**
   * The view depth of face g's plane on the line of sight through the canvas point (x, y) of a
   * W x H canvas; g's centroid depth when that line grazes the plane. P: the mesh's positions,
   * M: the camera's view matrix, E: its projection matrix (elements).
   */
  function planeDepth(g, x, y, W, H, P, M, E) {
    var b = 9 * g;
    var ax = M[0] * P[b] + M[4] * P[b + 1] + M[8] * P[b + 2] + M[12];
    var ay = M[1] * P[b] + M[5] * P[b + 1] + M[9] * P[b + 2] + M[13];
    var az = M[2] * P[b] + M[6] * P[b + 1] + M[10] * P[b + 2] + M[14];
    var ux = M[0] * P[b + 3] + M[4] * P[b + 4] + M[8] * P[b + 5] + M[12] - ax;
    var uy = M[1] * P[b + 3] + M[5] * P[b + 4] + M[9] * P[b + 5] + M[13] - ay;
    var uz = M[2] * P[b + 3] + M[6] * P[b + 4] + M[10] * P[b + 5] + M[14] - az;
    var vx = M[0] * P[b + 6] + M[4] * P[b + 7] + M[8] * P[b + 8] + M[12] - ax;
    var vy = M[1] * P[b + 6] + M[5] * P[b + 7] + M[9] * P[b + 8] + M[13] - ay;
    var vz = M[2] * P[b + 6] + M[6] * P[b + 7] + M[10] * P[b + 8] + M[14] - az;
    var nx = uy * vz - uz * vy, ny = uz * vx - ux * vz, nz = ux * vy - uy * vx;
    // The line of sight, scaled to one unit of depth (view z = -1).
    var dx = (2 * x / W - 1 + E[8]) / E[0], dy = (1 - 2 * y / H + E[9]) / E[5];
    var along = nx * dx + ny * dy - nz;
    var size = Math.sqrt((nx * nx + ny * ny + nz * nz) * (dx * dx + dy * dy + 1));
    if (!(Math.abs(along) > 1e-9 * size)) return projected.depth[g];
    return (nx * ax + ny * ay + nz * az) / along;
  }

  /** The faces whose centroid is inside the outline (visible ones unless "hidden too"): a count. */
  function facesInside(xs, ys) {
    var cur = state.current, F = cur.num_faces, rect = canvas.getBoundingClientRect(), W = rect.width, H = rect.height;
    var minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    for (var i = 0; i < xs.length; i++) {
      minX = Math.min(minX, xs[i]); maxX = Math.max(maxX, xs[i]);
      minY = Math.min(minY, ys[i]); maxY = Math.max(maxY, ys[i]);
    }
    var x0 = Math.max(0, Math.floor(minX)), y0 = Math.max(0, Math.floor(minY));
    var x1 = Math.min(Math.ceil(W), Math.ceil(maxX) + 1), y1 = Math.min(Math.ceil(H), Math.ceil(maxY) + 1);
    var width = x1 - x0, height = y1 - y0;
    if (width <= 0 || height <= 0) return 0;
    if (!buffers.taken || buffers.taken.length !== F) buffers.taken = new Int32Array(F);
    var hidden = $("through").checked, xy = project(), distance = projected.depth;
    rasterise(xs, ys, x0, y0, width, height);
    // The pick buffer over the box, in device pixels (its rows go up from the bottom).
    var size = app.pickSize(), ratio = size.width / W;
    var px0 = Math.max(0, Math.floor(x0 * ratio)), px1 = Math.min(size.width, Math.ceil(x1 * ratio));
    var pyTop = Math.max(0, Math.floor(y0 * ratio)), pyBottom = Math.min(size.height, Math.ceil(y1 * ratio));
    var pw = px1 - px0, ph = pyBottom - pyTop;
    if (!hidden && (pw <= 0 || ph <= 0)) return 0;
    if (!hidden) {
      if (buffers.pixels.length < 4 * pw * ph) buffers.pixels = new Uint8Array(4 * pw * ph);
      app.readPick(px0, size.height - pyBottom, pw, ph, buffers.pixels);
    }
    var mask = buffers.mask, pixels = buffers.pixels, taken = buffers.taken, count = 0;
    var P = app.view().positions, M = app.camera.matrixWorldInverse.elements, E = app.camera.projectionMatrix.elements;
    var footprint = 2 / (E[5] * H), extent = faceReach(); // footprint: a pixel's size at depth 1
    for (var f = 0; f < F; f++) {
      var x = xy[2 * f], y = xy[2 * f + 1], col = Math.floor(x) - x0, row = Math.floor(y) - y0;
      if (!(col >= 0 && col < width && row >= 0 && row < height) || !mask[row * width + col]) continue;
      if (hidden) { taken[count++] = f; continue; }
      var pc = Math.floor(x * ratio) - px0, pr = pyBottom - 1 - Math.floor(y * ratio);
      if (pc < 0 || pc >= pw || pr < 0 || pr >= ph) continue;
      var p = 4 * (pr * pw + pc), id = pixels[p] | (pixels[p + 1] << 8) | (pixels[p + 2] << 16);
      if (id === f + 1) { taken[count++] = f; continue; }
      if (id === 0) continue;
      // Not behind the face shown there: visible. Far behind that face's centroid (more than the
      // face reaches), or well in front of it, no plane needed.
      var g = id - 1, w = distance[f], slack = 2 * footprint * w, gap = w - distance[g];
      if (gap > extent[g] + slack) continue;
      if (gap < -extent[g] || w <= planeDepth(g, x, y, W, H, P, M, E) + slack) taken[count++] = f;
    }
    return count;
  }

  // ------------------------------------------------------------- drawing
  function localPoint(event) {
    var rect = canvas.getBoundingClientRect();
    return [event.clientX - rect.left, event.clientY - rect.top];
  }

  function addPoint(point) {
    outline.xs.push(point[0]); outline.ys.push(point[1]);
    outline.text += (outline.text ? " " : "") + point[0].toFixed(1) + "," + point[1].toFixed(1);
    shape.setAttribute("points", outline.text);
    overlay.style.display = "block";
    setSelecting();
  }

  function setRubber(point) {
    var n = outline.xs.length;
    rubber.style.display = outline.tool === "polygon" && n && point ? "" : "none";
    if (!n || !point) return;
    rubber.setAttribute("x1", outline.xs[n - 1]); rubber.setAttribute("y1", outline.ys[n - 1]);
    rubber.setAttribute("x2", point[0]); rubber.setAttribute("y2", point[1]);
  }

  function cancel() {
    outline.tool = null; outline.xs = []; outline.ys = []; outline.text = "";
    shape.setAttribute("points", "");
    overlay.style.display = "none";
    setRubber(null);
    setSelecting();
  }

  function finish() {
    var xs = outline.xs, ys = outline.ys, tool = outline.tool;
    cancel();
    if (xs.length < 3 || !state.current || !app.view()) return;
    app.camera.updateMatrixWorld();
    var began = performance.now();
    var count = facesInside(xs, ys);
    var value = state.erase ? -1 : state.active;
    var changed = count ? app.labelFaces(buffers.taken, count, value) : 0;
    document.body.dataset.selection = String(count);
    document.body.dataset.selectionMs = (performance.now() - began).toFixed(1);
    var what = value < 0 ? "erased" : "labelled " + (state.labelSet.names[value] || value);
    app.say(tool + ": " + count + " face(s) inside, " + changed + " " + what +
      ($("through").checked ? " (hidden faces too)" : " (visible faces)"));
  }

  function canStart() {
    if (!state.current) return false;
    if (!state.labelSet.names.length && !state.erase) { app.say("add a label first", true); return false; }
    return true;
  }

  function isSelectionTool() { return state.tool === "lasso" || state.tool === "polygon"; }

  canvas.addEventListener("pointerdown", function (event) {
    if (event.button !== 0 || !isSelectionTool()) return;
    var point = localPoint(event), n = outline.xs.length;
    if (state.tool === "lasso") {
      if (!canStart()) return;
      cancel();
      outline.tool = "lasso";
      canvas.setPointerCapture(event.pointerId);
      addPoint(point);
      return;
    }
    if (!n && !canStart()) return;
    outline.tool = "polygon";
    if (n >= 3 && Math.hypot(point[0] - outline.xs[0], point[1] - outline.ys[0]) <= CLOSE_PX) { finish(); return; }
    // The second press of a double-click lands on the corner just added: not a new corner.
    if (n && Math.hypot(point[0] - outline.xs[n - 1], point[1] - outline.ys[n - 1]) <= SAME_PX) return;
    addPoint(point);
    setRubber(point);
  });

  canvas.addEventListener("pointermove", function (event) {
    if (!outline.tool) return;
    var point = localPoint(event), n = outline.xs.length;
    if (outline.tool === "polygon") { setRubber(point); return; }
    var dx = point[0] - outline.xs[n - 1], dy = point[1] - outline.ys[n - 1];
    if (dx * dx + dy * dy >= MIN_STEP_PX * MIN_STEP_PX) addPoint(point);
  });

  function lassoEnd() { if (outline.tool === "lasso") finish(); }
  canvas.addEventListener("pointerup", lassoEnd);
  canvas.addEventListener("pointercancel", function () { if (outline.tool === "lasso") cancel(); });
  canvas.addEventListener("dblclick", function () { if (outline.tool === "polygon" && outline.xs.length >= 3) finish(); });

  // Before app.js's keys: Enter, Escape and Backspace act on the outline being drawn.
  window.addEventListener("keydown", function (event) {
    if (!outline.tool || !outline.xs.length) return;
    var target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "SELECT" || target.tagName === "TEXTAREA")) return;
    var key = event.key;
    if (key === "Escape") cancel();
    else if (key === "Enter" && outline.tool === "polygon") finish();
    else if (key === "Backspace" && outline.tool === "polygon") {
      outline.xs.pop(); outline.ys.pop();
      outline.text = outline.xs.map(function (x, i) { return x.toFixed(1) + "," + outline.ys[i].toFixed(1); }).join(" ");
      shape.setAttribute("points", outline.text);
      setRubber(null);
      if (!outline.xs.length) cancel();
    } else return;
    event.preventDefault();
    event.stopPropagation();
  }, true);

  app.onToolChanged.push(function (tool) { if (outline.tool && outline.tool !== tool) cancel(); });
  app.onMeshOpened.push(cancel);
  setSelecting();
})();
