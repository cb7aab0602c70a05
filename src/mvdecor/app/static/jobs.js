/*
 * mvdecor labelling app: "segment the rest", the background job. Loaded after app.js, whose
 * window.mvdecorApp gives the server calls, the message box, the mesh list and the open mesh.
 *
 * The job's progress comes as Server-Sent Events (GET api/jobs/current/events: "progress" events,
 * then one "end" event when the job is done, failed or cancelled). Where EventSource is missing,
 * or the stream fails (refused, or dropped three times in a row before any event), the page polls
 * GET api/jobs/current every half second instead.
 *
 * State for tests in <body>: data-job-channel ("events" or "polling" while the job is followed,
 * the last one used after), data-job-state (the job's state).
 */
(function () {
  "use strict";

  var app = window.mvdecorApp, state = app.state;
  var $ = function (id) { return document.getElementById(id); };
  var POLL_MS = 500, MAX_STREAM_ERRORS = 3;
  var follow = { source: null, polling: null };

  function showJob(job) {
    state.job = job;
    document.body.dataset.jobState = job ? job.state : "";
    var running = !!job && job.state === "running";
    $("start-job").disabled = running;
    $("cancel-job").disabled = !running;
    if (!job) { $("job-message").textContent = ""; return; }
    // Inside a training stage the bar follows its steps, else the meshes done.
    var training = job.state === "running" && job.steps > 0;
    $("progress").max = Math.max(training ? job.steps : job.total, 1);
    $("progress").value = training ? job.step : job.done;
    var text = job.method + ": " + job.state + " - " + job.message + " (" + job.done + "/" + job.total + " meshes, " + job.elapsed_s + " s)";
    $("job-message").textContent = job.error ? text + ": " + job.error : text;
    $("job-message").className = job.state === "failed" ? "err" : "";
  }

  function jobEnded(job) {
    showJob(job);
    app.loadList();
    if (job && job.state === "done") {
      app.say("segment the rest: " + job.predicted.length + " mesh(es) predicted");
      var cur = state.current;
      if (cur && job.predicted.indexOf(cur.id) >= 0 && !state.dirty) app.openMesh(cur.id);
    }
  }

  function poll() {
    document.body.dataset.jobChannel = "polling";
    app.api("GET", "api/jobs/current").then(function (data) {
      if (data.job && data.job.state === "running") {
        showJob(data.job);
        follow.polling = setTimeout(poll, POLL_MS);
        return;
      }
      follow.polling = null;
      jobEnded(data.job);
    }).catch(function (err) { follow.polling = null; app.say(err.message, true); });
  }

  function stopStream() {
    if (follow.source) follow.source.close();
    follow.source = null;
  }

  /** Follow the job until it ends: its event stream, else polling. */
  function watch() {
    if (follow.source || follow.polling) return;
    if (typeof window.EventSource !== "function") { poll(); return; }
    var source, errors = 0;
    try {
      source = new window.EventSource("api/jobs/current/events" + (app.token ? "?token=" + encodeURIComponent(app.token) : ""));
    } catch (err) { poll(); return; }
    follow.source = source;
    document.body.dataset.jobChannel = "events";
    source.addEventListener("progress", function (event) {
      errors = 0;
      showJob(JSON.parse(event.data).job);
    });
    source.addEventListener("end", function (event) {
      stopStream();
      jobEnded(JSON.parse(event.data).job);
    });
    source.onerror = function () {
      // A closed stream (refused) or one that keeps dropping: poll instead. A single drop is the
      // server ending a long stream; the browser reconnects by itself.
      errors += 1;
      if (source.readyState === 2 || errors >= MAX_STREAM_ERRORS) {
        stopStream();
        poll();
      }
    };
  }

  function startJob() {
    var method = $("method").value;
    if (method === "pipeline" && !window.confirm("The first round of the full pipeline pre-trains a network on this folder (about 25 minutes on 2 CPU cores with the cpu preset, 10 meshes); later rounds reuse it and take seconds. Start it?")) return;
    app.api("POST", "api/jobs", { method: method, options: {} }).then(function (job) {
      showJob(job);
      watch();
    }).catch(function (err) { app.say(err.message, true); });
  }

  $("start-job").addEventListener("click", startJob);
  $("cancel-job").addEventListener("click", function () {
    app.api("POST", "api/jobs/current/cancel", {}).then(function (reply) { showJob(reply.job); })
      .catch(function (err) { app.say(err.message, true); });
  });
  app.onInfo.push(function (info) {
    showJob(info.job);
    if (info.job && info.job.state === "running") watch();
  });
})();
