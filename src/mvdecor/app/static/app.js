/*
 * mvdecor labelling app: the page's script (classic script; THREE and THREE.OrbitControls,
 * three.js r147, are loaded before it from the copy vendored in mvdecor/viz/static).
 *
 * Picking: every face is drawn once more into an off-screen buffer with its index as its
 * colour; the brush reads the pixels under its circle, so it paints exactly the faces that
 * are visible there (a screen-space radius, no BVH needed). "Paint hidden faces too" instead
 * projects face centroids and takes every face within the radius. The fill grows from the
 * clicked face over the server's face adjacency while the dihedral angle stays under the limit.
 *
 * The eraser is a mode (E toggles it): the brush, the fill, the lasso and the polygon then erase.
 * The lasso and polygon tools live in selection.js, the job in jobs.js, painted views in views.js,
 * adding meshes in uploads.js; they use window.mvdecorApp (at the end of this file).
 *
 * The page reports its state for tests in <body>: data-app ("loading", "ready", "error"),
 * data-mesh (the mesh shown), data-labelled (its faces with a label), data-dirty (unsaved edits),
 * data-fill-ready (the fill's face adjacency, fetched after the mesh's first frame, has arrived),
 * data-label-set-error (the reason labels.json cannot be used; empty when it can).
 */
(function () {
  "use strict";

  var TOKEN = new URLSearchParams(window.location.search).get("token") || "";
  var UNLABELLED = [80, 80, 80];
  var LOW_CONFIDENCE = [255, 0, 200];

  var $ = function (id) { return document.getElementById(id); };
  var state = {
    meshes: [], labelSet: { names: [], colors: [], version: "none" }, current: null,
    tool: "brush", erase: false, active: 0, undo: [], redo: [], dirty: false, showPrediction: false,
    labelSetDirty: false, job: null,
  };
  // What the other scripts hook into: see window.mvdecorApp below.
  var hooks = { onMeshOpened: [], onLabelsChanged: [], onToolChanged: [], onInfo: [], beforeMeshChange: [] };

  // ------------------------------------------------------------------ server
  function api(method, path, body) {
    var headers = {};
    if (TOKEN) headers["X-MVDecor-Token"] = TOKEN;
    var init = { method: method, headers: headers };
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body || {});
    }
    return fetch(path, init).then(function (reply) {
      return reply.json().catch(function () { return {}; }).then(function (data) {
        if (!reply.ok) {
          var err = new Error(data.error || reply.status + " " + reply.statusText);
          err.status = reply.status;
          err.data = data;
          throw err;
        }
        return data;
      });
    });
  }

  function fileUrl(path) {
    return "api/files/" + path.split("/").map(encodeURIComponent).join("/") + (TOKEN ? "?token=" + encodeURIComponent(TOKEN) : "");
  }

  function decode(b64, Type) {
    var bytes = Uint8Array.from(atob(b64), function (c) { return c.charCodeAt(0); });
    return new Type(bytes.buffer, 0, bytes.byteLength / Type.BYTES_PER_ELEMENT);
  }

  var messageTimer = null;
  function say(text, isError) {
    var box = $("message");
    box.textContent = text;
    box.className = isError ? "error" : "";
    box.style.display = text ? "block" : "none";
    clearTimeout(messageTimer);
    if (text && !isError) messageTimer = setTimeout(function () { box.style.display = "none"; }, 4000);
  }

  // ------------------------------------------------------------------ three
  var canvas = $("view");
  var renderer = new THREE.WebGLRenderer({ canvas: canvas, antialias: true, preserveDrawingBuffer: true });
  renderer.setPixelRatio(window.devicePixelRatio || 1);
  var scene = new THREE.Scene();
  scene.background = new THREE.Color(0xffffff);
  var camera = new THREE.PerspectiveCamera(35, 1, 0.01, 100);
  var light = new THREE.DirectionalLight(0xffffff, 0.7);
  scene.add(new THREE.AmbientLight(0xffffff, 0.45));
  camera.add(light);
  light.position.set(0.3, 0.5, 1);
  scene.add(camera);
  var controls = new THREE.OrbitControls(camera, canvas);
  controls.enableDamping = false;
  var pickScene = new THREE.Scene();
  var pickTarget = new THREE.WebGLRenderTarget(1, 1);
  var pickDirty = true;
  var view = null; // {mesh, wire, pick, colors, positions (F * 9), centroids (F * 3)}

  function resize() {
    var rect = canvas.parentElement.getBoundingClientRect();
    renderer.setSize(rect.width, rect.height, false);
    camera.aspect = rect.width / Math.max(rect.height, 1);
    camera.updateProjectionMatrix();
    var size = renderer.getDrawingBufferSize(new THREE.Vector2());
    pickTarget.setSize(size.x, size.y);
    pickDirty = true;
    draw();
  }

  // One render per animation frame, however many edits or camera moves came before it: a
  // brush stroke sends many pointer events per frame, and a 300k-face frame is not free.
  var drawQueued = false;
  function draw() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(function () {
      drawQueued = false;
      uploadColors();
      renderer.render(scene, camera);
    });
  }
  controls.addEventListener("change", function () { pickDirty = true; draw(); });
  window.addEventListener("resize", resize);

  function buildView(data) {
    if (view) {
      scene.remove(view.mesh); scene.remove(view.wire); pickScene.remove(view.pick);
      view.mesh.geometry.dispose(); view.pick.geometry.dispose();
    }
    var vertices = decode(data.vertices, Float32Array);
    var faces = decode(data.faces, Uint32Array);
    var F = data.num_faces;
    var positions = new Float32Array(F * 9);
    var centroids = new Float32Array(F * 3);
    var ids = new Uint8Array(F * 9);
    for (var f = 0; f < F; f++) {
      var id = f + 1;
      for (var k = 0; k < 3; k++) {
        var v = faces[3 * f + k];
        for (var c = 0; c < 3; c++) {
          positions[9 * f + 3 * k + c] = vertices[3 * v + c];
          centroids[3 * f + c] += vertices[3 * v + c] / 3;
        }
        ids[9 * f + 3 * k] = id & 255;
        ids[9 * f + 3 * k + 1] = (id >> 8) & 255;
        ids[9 * f + 3 * k + 2] = (id >> 16) & 255;
      }
    }
    var geometry = new THREE.BufferGeometry();
    geometry.setAttribute("position", new THREE.BufferAttribute(positions, 3));
    geometry.computeVertexNormals();
    // Bytes, not floats: a quarter of the upload when a stroke recolours faces.
    var colors = new Uint8Array(F * 9);
    geometry.setAttribute("color", new THREE.BufferAttribute(colors, 3, true));
    var mesh = new THREE.Mesh(geometry, new THREE.MeshLambertMaterial({ vertexColors: true, side: THREE.DoubleSide }));
    var wire = new THREE.Mesh(geometry, new THREE.MeshBasicMaterial({ color: 0x000000, wireframe: true, transparent: true, opacity: 0.25 }));
    wire.visible = $("wireframe").checked;
    var pickGeometry = new THREE.BufferGeometry();
    pickGeometry.setAttribute("position", geometry.getAttribute("position"));
    pickGeometry.setAttribute("color", new THREE.BufferAttribute(ids, 3, true));
    var pick = new THREE.Mesh(pickGeometry, new THREE.MeshBasicMaterial({ vertexColors: true, side: THREE.DoubleSide, toneMapped: false }));
    scene.add(mesh); scene.add(wire); pickScene.add(pick);
    view = { mesh: mesh, wire: wire, pick: pick, colors: colors, positions: positions, centroids: centroids, dirtyFrom: -1, dirtyTo: -1 };
    // Frame the mesh.
    geometry.computeBoundingSphere();
    var sphere = geometry.boundingSphere;
    var distance = (1.2 * sphere.radius) / Math.sin(THREE.MathUtils.degToRad(35 / 2));
    camera.near = sphere.radius / 100; camera.far = sphere.radius * 100;
    camera.position.copy(sphere.center).add(new THREE.Vector3(0.6, 0.45, 1).normalize().multiplyScalar(distance));
    camera.updateProjectionMatrix();
    controls.target.copy(sphere.center);
    controls.update();
    pickDirty = true;
  }

  var rgbCache = {}; // "#rrggbb" -> [r, g, b]: a full recolour asks once per face, 300k times
  function rgbOf(label) {
    var hex = state.labelSet.colors[label];
    if (label < 0 || !hex) return UNLABELLED;
    var rgb = rgbCache[hex];
    if (!rgb) rgb = rgbCache[hex] = [parseInt(hex.slice(1, 3), 16), parseInt(hex.slice(3, 5), 16), parseInt(hex.slice(5, 7), 16)];
    return rgb;
  }

  function faceColor(f) {
    var cur = state.current;
    if (state.showPrediction && cur.prediction) {
      var p = cur.prediction;
      var rgb = rgbOf(p.labels[f]);
      if (p.confidence[f] < Number($("confidence").value)) {
        return [(rgb[0] + LOW_CONFIDENCE[0]) / 2, (rgb[1] + LOW_CONFIDENCE[1]) / 2, (rgb[2] + LOW_CONFIDENCE[2]) / 2];
      }
      return rgb;
    }
    return rgbOf(cur.labels[f]);
  }

  function paintColors(faceList) {
    if (!view) return;
    var colors = view.colors, cur = state.current;
    var n = faceList ? faceList.length : cur.num_faces;
    var from = faceList ? Infinity : 0, to = faceList ? -1 : n - 1;
    for (var i = 0; i < n; i++) {
      var f = faceList ? faceList[i] : i;
      var rgb = faceColor(f);
      for (var k = 0; k < 3; k++) {
        colors[9 * f + 3 * k] = rgb[0];
        colors[9 * f + 3 * k + 1] = rgb[1];
        colors[9 * f + 3 * k + 2] = rgb[2];
      }
      if (f < from) from = f;
      if (f > to) to = f;
    }
    if (to < 0) return;
    // Only the span of faces changed since the last frame goes to the GPU (see uploadColors).
    view.dirtyFrom = view.dirtyFrom < 0 ? from : Math.min(view.dirtyFrom, from);
    view.dirtyTo = Math.max(view.dirtyTo, to);
    draw();
  }

  function uploadColors() {
    if (!view || view.dirtyFrom < 0) return;
    var attribute = view.mesh.geometry.getAttribute("color");
    attribute.updateRange.offset = 9 * view.dirtyFrom;
    attribute.updateRange.count = 9 * (view.dirtyTo - view.dirtyFrom + 1);
    attribute.needsUpdate = true;
    view.dirtyFrom = view.dirtyTo = -1;
  }

  // ----------------------------------------------------------------- picking
  var pickPixels = null, pickWidth = 0, pickHeight = 0;

  function refreshPick() {
    if (!pickDirty || !view) return;
    renderer.setRenderTarget(pickTarget);
    renderer.setClearColor(0x000000, 1);
    renderer.clear();
    renderer.render(pickScene, camera);
    renderer.setRenderTarget(null);
    pickWidth = pickTarget.width; pickHeight = pickTarget.height;
    pickDirty = false;
  }

  /** Read back a rectangle of the face-index buffer (device pixels, origin bottom left). */
  function readPick(x, y, width, height, into) {
    refreshPick();
    renderer.readRenderTargetPixels(pickTarget, x, y, width, height, into);
  }

  function pickSize() { refreshPick(); return { width: pickWidth, height: pickHeight }; }

  function facesUnder(clientX, clientY, radius) {
    refreshPick();
    var rect = canvas.getBoundingClientRect();
    var ratio = pickWidth / rect.width;
    var cx = (clientX - rect.left) * ratio, cy = (rect.bottom - clientY) * ratio;
    var r = Math.max(radius * ratio, 0.5);
    var found = new Set();
    if ($("through").checked && state.tool !== "fill") {
      var v = new THREE.Vector3(), C = view.centroids;
      for (var f = 0; f < state.current.num_faces; f++) {
        v.set(C[3 * f], C[3 * f + 1], C[3 * f + 2]).project(camera);
        var px = (v.x + 1) / 2 * rect.width - (clientX - rect.left);
        var py = (1 - v.y) / 2 * rect.height - (clientY - rect.top);
        if (v.z < 1 && px * px + py * py <= radius * radius) found.add(f);
      }
      return found;
    }
    var x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(pickWidth - 1, Math.ceil(cx + r));
    var y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(pickHeight - 1, Math.ceil(cy + r));
    if (x1 < x0 || y1 < y0) return found;
    // Only the brush's square is read back from the pick buffer, not the whole buffer.
    var w = x1 - x0 + 1, h = y1 - y0 + 1;
    if (!pickPixels || pickPixels.length < 4 * w * h) pickPixels = new Uint8Array(4 * w * h);
    renderer.readRenderTargetPixels(pickTarget, x0, y0, w, h, pickPixels);
    for (var y = y0; y <= y1; y++) {
      for (var x = x0; x <= x1; x++) {
        if ((x - cx) * (x - cx) + (y - cy) * (y - cy) > r * r) continue;
        var i = 4 * ((y - y0) * w + (x - x0));
        var id = pickPixels[i] | (pickPixels[i + 1] << 8) | (pickPixels[i + 2] << 16);
        if (id > 0) found.add(id - 1);
      }
    }
    return found;
  }

  // --------------------------------------------------------------- editing
  var stroke = null; // {faces: Map face -> old label, value}

  function setLabels(faces, value) {
    var labels = state.current.labels, changed = [];
    faces.forEach(function (f) {
      if (labels[f] === value) return;
      if (!stroke.faces.has(f)) stroke.faces.set(f, labels[f]);
      labels[f] = value;
      changed.push(f);
    });
    if (changed.length) {
      if (state.showPrediction) { state.showPrediction = false; $("show-prediction").checked = false; paintColors(); }
      else paintColors(changed);
      markDirty(true);
    }
  }

  function beginStroke() { stroke = { faces: new Map(), value: state.erase ? -1 : state.active }; }

  /**
   * Give the first `count` faces of `faces` the label `value` (-1 erases) as one undo step: the
   * lasso's and polygon's selections. Returns how many faces changed.
   */
  function labelFaces(faces, count, value) {
    var labels = state.current.labels, changed = new Int32Array(count), old = new Int32Array(count), n = 0;
    for (var i = 0; i < count; i++) {
      var f = faces[i];
      if (labels[f] === value) continue;
      changed[n] = f; old[n] = labels[f]; labels[f] = value; n++;
    }
    if (!n) return 0;
    state.undo.push({ faces: changed.slice(0, n), old: old.slice(0, n), value: value });
    if (state.undo.length > 200) state.undo.shift();
    state.redo = [];
    if (state.showPrediction) { state.showPrediction = false; $("show-prediction").checked = false; paintColors(); }
    else paintColors(state.undo[state.undo.length - 1].faces);
    markDirty(true);
    return n;
  }

  function endStroke() {
    if (stroke && stroke.faces.size) {
      var faces = Int32Array.from(stroke.faces.keys());
      var old = Int32Array.from(stroke.faces.values());
      state.undo.push({ faces: faces, old: old, value: stroke.value });
      if (state.undo.length > 200) state.undo.shift();
      state.redo = [];
    }
    stroke = null;
    updateButtons();
  }

  function undo(redo) {
    var from = redo ? state.redo : state.undo, to = redo ? state.undo : state.redo;
    var step = from.pop();
    if (!step || !state.current) return;
    var labels = state.current.labels;
    for (var i = 0; i < step.faces.length; i++) labels[step.faces[i]] = redo ? step.value : step.old[i];
    to.push(step);
    paintColors(step.faces);
    markDirty(true);
    updateButtons();
  }

  function fill(face) {
    var cur = state.current, limit = Number($("angle").value);
    if (!cur.adjStart) { say("the fill is not ready yet (face adjacency still loading); try again in a moment", true); return []; }
    var start = cur.adjStart, list = cur.adjList, angle = cur.adjAngle;
    var seen = new Uint8Array(cur.num_faces), queue = [face], region = [];
    seen[face] = 1;
    while (queue.length) {
      var f = queue.pop();
      region.push(f);
      for (var e = start[f]; e < start[f + 1]; e++) {
        var g = list[e];
        if (!seen[g] && angle[e] < limit) { seen[g] = 1; queue.push(g); }
      }
    }
    return region;
  }

  function adjacencyLists(data) {
    // CSR lists of each face's neighbours and the dihedral angle to each.
    var pairs = decode(data.adjacency, Uint32Array), angles = decode(data.dihedral, Float32Array);
    var F = data.num_faces, E = angles.length;
    var start = new Int32Array(F + 1);
    for (var e = 0; e < E; e++) { start[pairs[2 * e] + 1]++; start[pairs[2 * e + 1] + 1]++; }
    for (var f = 0; f < F; f++) start[f + 1] += start[f];
    var fillAt = Int32Array.from(start.subarray(0, F));
    var list = new Int32Array(2 * E), angle = new Float32Array(2 * E);
    for (e = 0; e < E; e++) {
      var a = pairs[2 * e], b = pairs[2 * e + 1];
      list[fillAt[a]] = b; angle[fillAt[a]++] = angles[e];
      list[fillAt[b]] = a; angle[fillAt[b]++] = angles[e];
    }
    return { start: start, list: list, angle: angle };
  }

  var painting = false, PAINT_TOOLS = { brush: true, fill: true };
  canvas.addEventListener("pointerdown", function (event) {
    if (!state.current || event.button !== 0 || !PAINT_TOOLS[state.tool]) return;
    if (!state.labelSet.names.length && !state.erase) { say("add a label first", true); return; }
    beginStroke();
    if (state.tool === "fill") {
      var hit = facesUnder(event.clientX, event.clientY, 0.5);
      if (hit.size) setLabels(fill(hit.values().next().value), stroke.value);
      endStroke();
      return;
    }
    painting = true;
    setLabels(facesUnder(event.clientX, event.clientY, Number($("radius").value)), stroke.value);
  });
  canvas.addEventListener("pointermove", function (event) {
    moveCursor(event);
    if (painting) setLabels(facesUnder(event.clientX, event.clientY, Number($("radius").value)), stroke.value);
  });
  window.addEventListener("pointerup", function () { if (painting) { painting = false; endStroke(); } });
  canvas.addEventListener("pointerleave", function () { $("cursor").style.display = "none"; });

  function moveCursor(event) {
    var cursor = $("cursor");
    if (state.tool !== "brush" || !state.current) { cursor.style.display = "none"; return; }
    var r = Number($("radius").value), rect = canvas.getBoundingClientRect();
    cursor.style.display = "block";
    cursor.style.width = cursor.style.height = 2 * r + "px";
    cursor.style.left = event.clientX - rect.left - r + "px";
    cursor.style.top = event.clientY - rect.top - r + "px";
  }

  function setTool(tool) {
    state.tool = tool;
    controls.mouseButtons.LEFT = tool === "orbit" ? THREE.MOUSE.ROTATE : -1;
    controls.mouseButtons.RIGHT = tool === "orbit" ? THREE.MOUSE.PAN : THREE.MOUSE.ROTATE;
    document.querySelectorAll("[data-tool]").forEach(function (b) { b.classList.toggle("on", b.dataset.tool === tool); });
    canvas.style.cursor = tool === "orbit" ? "grab" : tool === "fill" ? "cell" : "crosshair";
    $("cursor").style.display = "none";
    hooks.onToolChanged.forEach(function (hook) { hook(tool); });
  }

  /** The eraser mode: the brush, fill, lasso and polygon erase while it is on. */
  function setErase(on) {
    state.erase = !!on;
    $("erase-mode").classList.toggle("on", state.erase);
    document.body.dataset.erase = String(state.erase);
    if (state.erase && state.tool === "orbit") setTool("brush");
  }

  // ------------------------------------------------------------- mesh list
  function markDirty(dirty) {
    state.dirty = dirty;
    updateStatus();
    updateButtons();
  }

  function updateStatus() {
    var cur = state.current;
    if (!cur) { $("status").textContent = "no mesh"; return; }
    var labelled = 0;
    for (var i = 0; i < cur.labels.length; i++) if (cur.labels[i] >= 0) labelled++;
    document.body.dataset.mesh = cur.id;
    document.body.dataset.labelled = String(labelled);
    document.body.dataset.dirty = String(state.dirty);
    $("status").textContent = cur.id + " (" + cur.file + "): " + cur.num_faces + " faces, " + labelled +
      " labelled" + (state.dirty ? ", unsaved changes" : "") + (state.showPrediction ? "; showing the prediction" : "");
  }

  function updateButtons() {
    var cur = state.current;
    $("undo").disabled = !state.undo.length;
    $("redo").disabled = !state.redo.length;
    $("save").disabled = !cur || !state.dirty;
    $("accept").disabled = !cur || !cur.prediction;
    $("export").disabled = !cur;
  }

  function renderList() {
    var list = $("meshes");
    list.innerHTML = "";
    if (!state.meshes.length) {
      var empty = document.createElement("li");
      empty.className = "empty";
      empty.textContent = "no meshes yet: add some, or drop mesh files here";
      list.appendChild(empty);
    }
    state.meshes.forEach(function (m) {
      var li = document.createElement("li");
      if (state.current && state.current.id === m.id) li.className = "current";
      var name = document.createElement("span");
      name.textContent = m.id;
      if (m.error) name.title = m.error;
      var badge = document.createElement("span");
      badge.className = "state " + m.state;
      badge.textContent = m.state;
      li.appendChild(name); li.appendChild(badge);
      li.addEventListener("click", function () { openMesh(m.id); });
      list.appendChild(li);
      if (m.error) {
        var err = document.createElement("li");
        err.className = "err";
        err.textContent = m.error;
        list.appendChild(err);
      }
    });
  }

  function loadList() {
    return api("GET", "api/meshes").then(function (data) { state.meshes = data.meshes; renderList(); });
  }

  /**
   * Open mesh `id`, once every beforeMeshChange hook agrees (each returns true, false or a promise
   * of one: painted views save their strokes first, and keep the user there when that fails).
   */
  function openMesh(id) {
    var ready = hooks.beforeMeshChange.reduce(function (previous, hook) {
      return previous.then(function (ok) { return ok && hook(id); });
    }, Promise.resolve(true));
    return ready.then(function (ok) { if (ok) loadMesh(id); });
  }

  function loadMesh(id) {
    if (state.dirty && !window.confirm("Discard the unsaved labels of " + state.current.id + "?")) return;
    say("loading " + id + "...");
    // The fill's face adjacency comes apart, after the first frame: on a large mesh it is half
    // the payload and most of the server's time, and only the fill needs it.
    api("GET", "api/meshes/" + encodeURIComponent(id) + "?fill_graph=false").then(function (data) {
      data.labels = Int32Array.from(data.labels);
      loadFillGraph(data);
      if (data.prediction) {
        data.prediction.labels = Int32Array.from(data.prediction.labels);
        data.prediction.confidence = decode(data.prediction.confidence, Float32Array);
      }
      state.current = data;
      document.body.dataset.fillReady = String(!!data.adjStart);
      history.replaceState(null, "", "#mesh=" + encodeURIComponent(data.id));
      state.undo = []; state.redo = [];
      state.showPrediction = !!data.prediction && !data.labels.some(function (l) { return l >= 0; });
      $("show-prediction").checked = state.showPrediction;
      buildView(data);
      paintColors();
      markDirty(false);
      renderList();
      $("exports").innerHTML = "";
      say(data.label_error ? "labels unreadable: " + data.label_error + " (saving replaces them)" : "", !!data.label_error);
      hooks.onMeshOpened.forEach(function (hook) { hook(); });
    }).catch(function (err) { say(id + ": " + err.message, true); });
  }

  function loadFillGraph(data) {
    api("GET", "api/meshes/" + encodeURIComponent(data.id) + "/fill-graph").then(function (graph) {
      var adj = adjacencyLists({ adjacency: graph.adjacency, dihedral: graph.dihedral, num_faces: data.num_faces });
      data.adjStart = adj.start; data.adjList = adj.list; data.adjAngle = adj.angle;
      if (state.current === data) document.body.dataset.fillReady = "true";
    }).catch(function (err) { say("fill unavailable: " + err.message, true); });
  }

  function save() {
    var cur = state.current;
    if (!cur) return;
    // Labels added or renamed in the editor are saved first: the labels may use them.
    if (state.labelSetDirty) { saveLabelSet().then(save, function () {}); return; }
    api("PUT", "api/meshes/" + encodeURIComponent(cur.id) + "/labels", { version: cur.version, labels: Array.from(cur.labels) })
      .then(function (reply) {
        cur.version = reply.version;
        markDirty(false);
        say("saved " + cur.id + " (" + cur.label_file + ")");
        return loadList();
      })
      .catch(function (err) {
        if (err.status === 409) say(err.message + " Your edits are still here; reload the mesh to see the other version.", true);
        else say("not saved: " + err.message, true);
      });
  }

  function accept() {
    var cur = state.current;
    if (!cur || !cur.prediction) return;
    if (state.dirty && !window.confirm("Replace your unsaved labels with the prediction?")) return;
    api("POST", "api/meshes/" + encodeURIComponent(cur.id) + "/accept", { version: cur.version }).then(function (reply) {
      cur.version = reply.version;
      cur.labels = Int32Array.from(reply.labels);
      state.undo = []; state.redo = [];
      state.showPrediction = false; $("show-prediction").checked = false;
      paintColors();
      markDirty(false);
      say("accepted the prediction of " + cur.id + ": correct it with the brush, then save");
      return loadList();
    }).catch(function (err) { say("not accepted: " + err.message, true); });
  }

  function exportMesh() {
    var cur = state.current;
    if (!cur) return;
    var source = state.showPrediction && cur.prediction ? "prediction" : "labels";
    if (source === "labels" && state.dirty && !window.confirm("Export the saved labels? Your unsaved edits are not in it: save first to include them.")) return;
    api("POST", "api/meshes/" + encodeURIComponent(cur.id) + "/export", { source: source }).then(function (reply) {
      var box = $("exports");
      box.innerHTML = "";
      var note = document.createElement("div");
      note.textContent = "wrote " + reply.folder + "/ (" + source + "):";
      box.appendChild(note);
      Object.keys(reply.files).forEach(function (key) {
        var a = document.createElement("a");
        a.href = fileUrl(reply.files[key]);
        a.textContent = reply.files[key].split("/").slice(1).join("/");
        a.setAttribute("download", "");
        box.appendChild(a);
      });
    }).catch(function (err) { say("export failed: " + err.message, true); });
  }

  // -------------------------------------------------------------- label set
  function renderLabels() {
    var box = $("labels");
    box.innerHTML = "";
    state.labelSet.names.forEach(function (name, i) {
      var row = document.createElement("div");
      row.className = "row" + (i === state.active ? " active" : "");
      var key = document.createElement("span");
      key.className = "key";
      key.textContent = i < 9 ? String(i + 1) : "";
      var color = document.createElement("input");
      color.type = "color"; color.value = state.labelSet.colors[i];
      color.addEventListener("input", function () {
        state.labelSet.colors[i] = color.value; state.labelSetDirty = true;
        if (state.current) paintColors();
        hooks.onLabelsChanged.forEach(function (hook) { hook(); });
      });
      var text = document.createElement("input");
      text.type = "text"; text.value = name;
      text.addEventListener("change", function () { state.labelSet.names[i] = text.value; state.labelSetDirty = true; });
      row.addEventListener("click", function (e) { if (e.target === row || e.target === key) setActive(i); });
      text.addEventListener("focus", function () { setActive(i, true); });
      // A malformed labels.json is replaced or fixed first: edits here could not be saved.
      color.disabled = text.disabled = !!state.labelSet.error;
      row.appendChild(key); row.appendChild(color); row.appendChild(text);
      box.appendChild(row);
    });
    if (!state.labelSet.names.length) box.textContent = "no labels yet: add one";
  }

  function setActive(i, quiet) {
    if (i < 0 || i >= state.labelSet.names.length) return;
    state.active = i;
    if (state.erase) setErase(false);
    if (state.tool === "orbit") setTool("brush");
    if (!quiet) renderLabels();
    else document.querySelectorAll("#labels .row").forEach(function (r, k) { r.classList.toggle("active", k === i); });
  }

  var DEFAULT_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  function addLabel() {
    var n = state.labelSet.names.length;
    state.labelSet.names.push("part " + n);
    state.labelSet.colors.push(DEFAULT_COLORS[n % DEFAULT_COLORS.length]);
    state.labelSetDirty = true;
    state.active = n;
    renderLabels();
  }

  /** A malformed labels.json: say why, and offer a fresh label set or a reload after a fix. */
  function showLabelSetError(error) {
    var box = $("label-set-error");
    document.body.dataset.labelSetError = error ? error.reason : "";
    $("save-labels-set").disabled = $("add-label").disabled = $("remove-label").disabled = !!error;
    box.style.display = error ? "block" : "none";
    if (error) $("label-set-error-text").textContent = error.message + ". You can " + error.advice + ".";
  }

  function resetLabelSet() {
    var file = state.labelSet.error ? state.labelSet.error.file : "labels.json";
    if (!window.confirm("Replace " + file + " by a fresh label set? The current file is kept beside it as a backup.")) return;
    api("POST", "api/labels/reset", { version: state.labelSet.version }).then(function (reply) {
      state.labelSet = reply.labels;
      state.labelSetDirty = false;
      showLabelSetError(null);
      renderLabels();
      if (state.current) paintColors();
      say("started a fresh label set" + (reply.backup ? "; the previous file is kept as " + reply.backup : ""));
    }).catch(function (err) { say("label set not replaced: " + err.message, true); });
  }

  function saveLabelSet() {
    var ls = state.labelSet;
    return api("PUT", "api/labels", { version: ls.version, names: ls.names, colors: ls.colors }).then(function (reply) {
      state.labelSet = reply;
      state.labelSetDirty = false;
      renderLabels();
      say("label set saved (labels.json)");
    }).catch(function (err) { say("label set not saved: " + err.message, true); throw err; });
  }

  // -------------------------------------------------------------- wiring
  document.querySelectorAll("[data-tool]").forEach(function (b) {
    b.addEventListener("click", function () { setTool(b.dataset.tool); });
  });
  $("radius").addEventListener("input", function () { $("radius-value").textContent = $("radius").value; });
  $("wireframe").addEventListener("change", function () { if (view) { view.wire.visible = $("wireframe").checked; draw(); } });
  $("undo").addEventListener("click", function () { undo(false); });
  $("redo").addEventListener("click", function () { undo(true); });
  $("save").addEventListener("click", save);
  $("add-label").addEventListener("click", addLabel);
  $("remove-label").addEventListener("click", function () {
    state.labelSet.names.pop(); state.labelSet.colors.pop();
    state.labelSetDirty = true;
    state.active = Math.min(state.active, state.labelSet.names.length - 1);
    renderLabels();
  });
  $("save-labels-set").addEventListener("click", function () { saveLabelSet().catch(function () {}); });
  $("erase-mode").addEventListener("click", function () { setErase(!state.erase); });
  $("label-set-reset").addEventListener("click", resetLabelSet);
  $("label-set-reload").addEventListener("click", function () { window.location.reload(); });
  $("show-prediction").addEventListener("change", function () {
    state.showPrediction = $("show-prediction").checked && !!(state.current && state.current.prediction);
    $("show-prediction").checked = state.showPrediction;
    if (state.current) { paintColors(); updateStatus(); }
  });
  $("confidence").addEventListener("change", function () { if (state.current) paintColors(); });
  $("accept").addEventListener("click", accept);
  $("export").addEventListener("click", exportMesh);
  window.addEventListener("beforeunload", function (event) { if (state.dirty) { event.preventDefault(); event.returnValue = ""; } });

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "SELECT" || target.tagName === "TEXTAREA") && !event.ctrlKey && !event.metaKey) return;
    var key = event.key.toLowerCase(), mod = event.ctrlKey || event.metaKey;
    if (mod && key === "z") { event.preventDefault(); undo(event.shiftKey); return; }
    if (mod && key === "y") { event.preventDefault(); undo(true); return; }
    if (mod && key === "s") { event.preventDefault(); save(); return; }
    if (mod) return;
    if (key === "b") setTool("brush");
    else if (key === "f") setTool("fill");
    else if (key === "e") setErase(!state.erase);
    else if (key === "l") setTool("lasso");
    else if (key === "g") setTool("polygon");
    else if (key === "o" || key === "escape") setTool("orbit");
    else if (key === "w") { $("wireframe").checked = !$("wireframe").checked; $("wireframe").dispatchEvent(new Event("change")); }
    else if (key === "p") { $("show-prediction").checked = !$("show-prediction").checked; $("show-prediction").dispatchEvent(new Event("change")); }
    else if (key === "a") accept();
    else if (key === "[" || key === "]") {
      var r = Number($("radius").value) + (key === "]" ? 4 : -4);
      $("radius").value = Math.max(2, Math.min(120, r));
      $("radius-value").textContent = $("radius").value;
    } else if (/^[1-9]$/.test(key)) setActive(Number(key) - 1);
  });

  // What views.js (painted views), selection.js (lasso, polygon) and jobs.js use of this page.
  window.mvdecorApp = {
    api: api, say: say, decode: decode, rgbOf: rgbOf, state: state, token: TOKEN,
    loadList: loadList, openMesh: openMesh, setTool: setTool,
    canvas: canvas, camera: camera, view: function () { return view; },
    readPick: readPick, pickSize: pickSize, labelFaces: labelFaces,
    onMeshOpened: hooks.onMeshOpened, onLabelsChanged: hooks.onLabelsChanged, onToolChanged: hooks.onToolChanged,
    onInfo: hooks.onInfo, beforeMeshChange: hooks.beforeMeshChange,
  };

  function start() {
    setTool("brush");
    setErase(false);
    resize();
    api("GET", "api/info").then(function (info) {
      $("folder-name").textContent = info.name;
      document.title = "mvdecor: " + info.name;
      state.labelSet = info.labels;
      showLabelSetError(info.labels.error);
      renderLabels();
      hooks.onInfo.forEach(function (hook) { hook(info); });
      return loadList();
    }).then(function () {
      updateButtons();
      document.body.dataset.app = "ready";
      // #mesh=ID in the address opens that mesh; else the first readable one.
      var wanted = decodeURIComponent((window.location.hash.match(/mesh=([^&]+)/) || [])[1] || "");
      var first = state.meshes.find(function (m) { return m.id === wanted && m.state !== "error"; }) ||
        state.meshes.find(function (m) { return m.state !== "error"; });
      if (first) openMesh(first.id);
    }).catch(function (err) {
      document.body.dataset.app = "error";
      say(err.message, true);
    });
  }
  // After the other scripts: they hook into what start() loads.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
