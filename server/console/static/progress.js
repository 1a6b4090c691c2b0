// Live progress of a run: the server-sent events the console relays from the
// coordinator's WatchRun stream. No library; the page is readable without it.
(function () {
  var box = document.getElementById("progress");
  if (!box || !window.EventSource) { return; }
  var phases = document.getElementById("phases"), seen = {};
  var source = new EventSource(box.dataset.events);
  source.onmessage = function (e) {
    var p = JSON.parse(e.data);
    document.getElementById("phase").textContent = p.phase;
    document.getElementById("state").textContent = p.state;
    document.getElementById("message").textContent = p.message;
    var bar = document.getElementById("bar");
    bar.max = p.total || 1;
    bar.value = p.total ? p.done : (p.state === "done" ? 1 : 0);
    if (!seen[p.phase]) {
      seen[p.phase] = true;
      var li = document.createElement("li");
      li.textContent = p.phase;
      phases.appendChild(li);
    }
    if (p.state === "done" || p.state === "failed") {
      document.getElementById("done").hidden = false;
    }
  };
  source.addEventListener("end", function () { source.close(); });
})();
