/*
 * mvdecor HTML report: interactive 3D views of segmented meshes.
 *
 * A classic script (no ES modules, no fetch), so the page works when opened
 * straight from a folder (file://). It needs the globals THREE and
 * THREE.OrbitControls (three.js r147, loaded before it) and reads each mesh
 * from the <script type="application/json" class="mesh-data"> block of its
 * <article class="viewer">, written by mvdecor.viz.report:
 *
 *   {"vertices": {"dtype": "float32", "data": base64},      (V*3,)
 *    "faces":    {"dtype": "uint16"|"uint32", "data": ...},   (F*3,)
 *    "labelings": [{"name", "dtype": "uint8"|"uint16", "data"}],  (F,) slot per face
 *    "slots": [{"name", "rgb": [r, g, b]}]}   slot 0 = unlabelled, slot i + 1 = label i
 *
 * One WebGL context draws every mesh in turn and each picture is copied onto
 * the viewer's own 2D canvas: browsers cap the number of live WebGL contexts
 * (about 16 in Chrome), and a report may show more meshes than that.
 *
 * When every viewer has drawn, <body> gets data-viewer="ready" and
 * data-triangles (triangles drawn, summed over the viewers); a test reads them.
 */
(function () {
  "use strict";

  var ARRAY_TYPES = { uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, float32: Float32Array };
  var VIEW_DIRECTION = [0.9, 0.55, 1.3]; // from the front-right, slightly above (y is up)

  function recordError(message) {
    if (window.mvdecorRecordError) window.mvdecorRecordError(message);
  }

  function decode(block) {
    var ArrayType = ARRAY_TYPES[block.dtype];
    if (!ArrayType) throw new Error("unknown array type " + block.dtype);
    var binary = atob(block.data);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return new ArrayType(bytes.buffer);
  }

  function MeshViewer(article, renderer) {
    this.article = article;
    this.renderer = renderer;
    this.canvas = article.querySelector("canvas.view");
    this.context = this.canvas.getContext("2d");
    var data = JSON.parse(article.querySelector("script.mesh-data").textContent);
    this.faces = decode(data.faces);
    this.numFaces = this.faces.length / 3;
    this.labelings = data.labelings.map(decode);
    this.slots = data.slots;
    var positions = decode(data.vertices);
    this.numVertices = positions.length / 3;

    this.geometry = new THREE.BufferGeometry();
    this.geometry.setAttribute("position", new THREE.BufferAttribute(positions, 3));
    // One material per part, so hiding a part is material.visible = false; flat
    // shading shows the facets, as the per-face labels do.
    this.materials = this.slots.map(function (slot) {
      var color = new THREE.Color(slot.rgb[0] / 255, slot.rgb[1] / 255, slot.rgb[2] / 255);
      return new THREE.MeshPhongMaterial({
        color: color,
        flatShading: true,
        side: THREE.DoubleSide,
        shininess: 8,
      });
    });
    this.mesh = new THREE.Mesh(this.geometry, this.materials);

    this.scene = new THREE.Scene();
    this.scene.add(this.mesh);
    this.scene.add(new THREE.AmbientLight(0xffffff, 0.5));
    this.light = new THREE.DirectionalLight(0xffffff, 0.65);
    this.scene.add(this.light);
    this.scene.add(this.light.target);

    this.geometry.computeBoundingSphere();
    var sphere = this.geometry.boundingSphere;
    var radius = sphere.radius > 0 && isFinite(sphere.radius) ? sphere.radius : 1;
    this.camera = new THREE.PerspectiveCamera(35, 1, radius / 100, radius * 100);
    var direction = new THREE.Vector3().fromArray(VIEW_DIRECTION).normalize();
    var distance = (1.15 * radius) / Math.sin(THREE.MathUtils.degToRad(35 / 2));
    this.camera.position.copy(sphere.center).addScaledVector(direction, distance);
    this.light.target.position.copy(sphere.center);

    this.controls = new THREE.OrbitControls(this.camera, this.canvas);
    this.controls.target.copy(sphere.center);
    this.controls.update();
    this.controls.addEventListener("change", this.render.bind(this));

    this.bindInputs();
    this.setLabeling(0);
  }

  MeshViewer.prototype.bindInputs = function () {
    var viewer = this;
    this.toggles = Array.prototype.slice.call(this.article.querySelectorAll("input.part-toggle"));
    this.toggles.forEach(function (box) {
      box.addEventListener("change", function () {
        viewer.materials[Number(box.dataset.slot)].visible = box.checked;
        viewer.render();
      });
    });
    this.article.querySelectorAll("button[data-parts]").forEach(function (button) {
      button.addEventListener("click", function () {
        var show = button.dataset.parts === "all";
        viewer.toggles.forEach(function (box) {
          box.checked = show;
          viewer.materials[Number(box.dataset.slot)].visible = show;
        });
        viewer.render();
      });
    });
    this.article.querySelectorAll("input.colouring").forEach(function (radio) {
      radio.addEventListener("change", function () {
        if (radio.checked) viewer.setLabeling(Number(radio.value));
      });
    });
  };

  // Sort the faces by part (a counting sort) into a fresh index buffer, one
  // draw group per part, and show each part's face count next to its toggle.
  MeshViewer.prototype.setLabeling = function (which) {
    var labels = this.labelings[which];
    var numSlots = this.slots.length;
    var counts = new Uint32Array(numSlots);
    for (var f = 0; f < this.numFaces; f++) counts[labels[f]]++;
    var starts = new Uint32Array(numSlots);
    for (var s = 1; s < numSlots; s++) starts[s] = starts[s - 1] + counts[s - 1];
    var cursor = starts.slice();
    var IndexType = this.numVertices > 65535 ? Uint32Array : Uint16Array;
    var index = new IndexType(this.numFaces * 3);
    for (f = 0; f < this.numFaces; f++) {
      var at = 3 * cursor[labels[f]]++;
      index[at] = this.faces[3 * f];
      index[at + 1] = this.faces[3 * f + 1];
      index[at + 2] = this.faces[3 * f + 2];
    }
    this.geometry.setIndex(new THREE.BufferAttribute(index, 1));
    this.geometry.clearGroups();
    for (s = 0; s < numSlots; s++) {
      if (counts[s] > 0) this.geometry.addGroup(3 * starts[s], 3 * counts[s], s);
    }
    this.toggles.forEach(function (box) {
      var count = counts[Number(box.dataset.slot)];
      var label = box.parentElement.querySelector(".count");
      if (label) label.textContent = count.toLocaleString("en") + (count === 1 ? " face" : " faces");
      box.parentElement.classList.toggle("absent", count === 0);
    });
    this.render();
  };

  MeshViewer.prototype.resize = function () {
    var ratio = window.devicePixelRatio || 1;
    var width = Math.max(1, Math.round(this.canvas.clientWidth * ratio));
    var height = Math.max(1, Math.round(this.canvas.clientHeight * ratio));
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
    }
  };

  MeshViewer.prototype.render = function () {
    this.resize();
    var width = this.canvas.width;
    var height = this.canvas.height;
    this.renderer.setSize(width, height, false);
    this.camera.aspect = width / height;
    this.camera.updateProjectionMatrix();
    this.light.position.copy(this.camera.position); // a head light: the side in view is lit
    this.renderer.render(this.scene, this.camera);
    this.triangles = this.renderer.info.render.triangles;
    this.context.clearRect(0, 0, width, height);
    this.context.drawImage(this.renderer.domElement, 0, 0);
    this.article.dataset.triangles = String(this.triangles);
  };

  function start() {
    var body = document.body;
    var articles = Array.prototype.slice.call(document.querySelectorAll("article.viewer"));
    if (articles.length === 0) {
      body.dataset.viewer = "none";
      return;
    }
    if (typeof THREE === "undefined" || typeof THREE.OrbitControls === "undefined") {
      recordError("three.js did not load (report_assets/ missing next to the page?)");
      body.dataset.viewer = "error";
      return;
    }
    var renderer;
    try {
      renderer = new THREE.WebGLRenderer({
        canvas: document.createElement("canvas"),
        antialias: true,
        preserveDrawingBuffer: true,
      });
    } catch (error) {
      recordError("WebGL is not available in this browser: " + error.message);
      body.dataset.viewer = "no-webgl";
      articles.forEach(function (article) {
        article.classList.add("no-webgl");
      });
      return;
    }
    renderer.setClearColor(0xf4f5f7, 1);
    var viewers = [];
    articles.forEach(function (article) {
      try {
        viewers.push(new MeshViewer(article, renderer));
      } catch (error) {
        recordError((article.dataset.name || "mesh") + ": " + (error && error.stack ? error.stack : error));
      }
    });
    window.addEventListener("resize", function () {
      viewers.forEach(function (viewer) {
        viewer.render();
      });
    });
    var triangles = viewers.reduce(function (sum, viewer) {
      return sum + viewer.triangles;
    }, 0);
    body.dataset.triangles = String(triangles);
    body.dataset.viewer = viewers.length === articles.length ? "ready" : "error";
    window.mvdecorViewers = viewers;
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
