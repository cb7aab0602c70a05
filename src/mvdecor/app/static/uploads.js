/*
 * mvdecor labelling app: adding meshes to the folder from the page. Loaded after app.js, whose
 * window.mvdecorApp gives the message box, the mesh list and the open mesh.
 *
 * "Add meshes..." opens a file picker (several files at once); files dropped on the mesh list are
 * added the same way. Each file goes, one after the other, as the body of PUT api/meshes/<name>
 * (application/octet-stream; XMLHttpRequest, for its upload progress). The server keeps a file only
 * when its loader reads it, and answers with its reason otherwise (taken name, not a mesh, too
 * large, unreadable), shown in the message box. The list is reloaded after each added mesh, and
 * when no mesh was open the first one added is opened.
 *
 * State for tests in <body>: data-upload ("uploading", then "done" once every file of a batch has
 * an answer), data-upload-added (the shape ids added by the last batch, space separated),
 * data-upload-failed (how many files of it were refused).
 */
(function () {
  "use strict";

  var app = window.mvdecorApp, state = app.state;
  var $ = function (id) { return document.getElementById(id); };
  var limits = { extensions: [], maxBytes: 0 }; // from api/info
  var busy = false;

  function megabytes(bytes) { return (bytes / 1048576).toFixed(bytes < 10485760 ? 1 : 0) + " MB"; }

  /** PUT one file; resolves with the new mesh's list entry, rejects with the server's reason. */
  function send(file, label) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open("PUT", "api/meshes/" + encodeURIComponent(file.name));
      if (app.token) xhr.setRequestHeader("X-MVDecor-Token", app.token);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = function (event) {
        if (event.lengthComputable) app.say(label + ": uploading, " + Math.round((100 * event.loaded) / event.total) + "%");
      };
      xhr.upload.onload = function () { app.say(label + ": checking that it loads..."); };
      xhr.onload = function () {
        var data = {};
        try { data = JSON.parse(xhr.responseText); } catch (err) { data = {}; }
        if (xhr.status >= 200 && xhr.status < 300) resolve(data);
        else reject(new Error(data.error || xhr.status + " " + xhr.statusText));
      };
      xhr.onerror = function () { reject(new Error("the upload failed (connection lost?)")); };
      xhr.send(file);
    });
  }

  /** Add `files` (a FileList or array) one after the other; says what became of each. */
  function addFiles(files) {
    files = Array.prototype.slice.call(files || []);
    if (!files.length) return Promise.resolve();
    if (busy) { app.say("still adding the previous files; try again when they are done", true); return Promise.resolve(); }
    busy = true;
    document.body.dataset.upload = "uploading";
    var added = [], failed = [];
    var chain = files.reduce(function (previous, file, i) {
      return previous.then(function () {
        var label = (files.length > 1 ? "(" + (i + 1) + "/" + files.length + ") " : "") + file.name;
        var ext = (file.name.match(/\.[^.]*$/) || [""])[0].toLowerCase();
        if (limits.extensions.length && limits.extensions.indexOf(ext) < 0) {
          failed.push(file.name + ": not a mesh format this folder reads (" + limits.extensions.join(", ") + ")");
          return null;
        }
        if (limits.maxBytes && file.size > limits.maxBytes) {
          failed.push(file.name + ": " + megabytes(file.size) + ", over the limit of " + megabytes(limits.maxBytes));
          return null;
        }
        return send(file, label).then(function (entry) {
          added.push(entry.id);
          return app.loadList();
        }, function (err) {
          // The server's reasons name the file already ("chair.obj: ...").
          failed.push(err.message.indexOf(file.name + ": ") === 0 ? err.message : file.name + ": " + err.message);
        });
      });
    }, Promise.resolve());
    return chain.then(function () {
      busy = false;
      var text = added.length ? "added " + added.join(", ") + (state.current ? " (open it from the list)" : "") : "";
      if (failed.length) text = (text ? text + "; " : "") + "not added: " + failed.join("; ");
      app.say(text, failed.length > 0);
      document.body.dataset.uploadAdded = added.join(" ");
      document.body.dataset.uploadFailed = String(failed.length);
      document.body.dataset.upload = "done";
      if (state.current || !added.length) return;
      // Nothing was open (an empty folder): open the first mesh added, then say again what
      // became of each file (opening a mesh clears the message box).
      var once = function () {
        app.onMeshOpened.splice(app.onMeshOpened.indexOf(once), 1);
        app.say(text, failed.length > 0);
      };
      app.onMeshOpened.push(once);
      app.openMesh(added[0]);
    });
  }

  function hasFiles(event) {
    var types = event.dataTransfer && event.dataTransfer.types;
    return !!types && Array.prototype.indexOf.call(types, "Files") >= 0;
  }

  var input = $("mesh-files"), list = $("meshes");
  $("add-meshes").addEventListener("click", function () { input.click(); });
  input.addEventListener("change", function () {
    var files = Array.prototype.slice.call(input.files);
    input.value = ""; // the same file can be picked again (after renaming it on disk, say)
    addFiles(files);
  });
  list.addEventListener("dragover", function (event) {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    list.classList.add("drop");
  });
  list.addEventListener("dragleave", function () { list.classList.remove("drop"); });
  list.addEventListener("drop", function (event) {
    if (!hasFiles(event)) return;
    event.preventDefault();
    list.classList.remove("drop");
    addFiles(event.dataTransfer.files);
  });
  // A file dropped anywhere else must not make the browser leave the page to show it.
  ["dragover", "drop"].forEach(function (kind) {
    window.addEventListener(kind, function (event) { if (hasFiles(event)) event.preventDefault(); });
  });
  app.onInfo.push(function (info) {
    if (!info.upload) return;
    limits.extensions = info.upload.extensions;
    limits.maxBytes = info.upload.max_bytes;
    input.accept = limits.extensions.join(",");
    $("add-meshes").title = "add mesh files to the folder (" + limits.extensions.join(", ") + "; at most " +
      megabytes(limits.maxBytes) + " each), or drop them on the list";
  });
  app.addFiles = addFiles;
})();
