// hubctl console: small progressive enhancements. Every page works
// without this script; it only refreshes the topics table, follows a
// job's progress and selects every letter at once. It never inserts
// text from letters as HTML: the topics table it swaps in is rendered and
// escaped by the server.
"use strict";

// parseDuration reads a Go duration such as "15s", "1m0s" or "500ms".
function parseDuration(s) {
  var re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g, ms = 0, m;
  var unit = { ms: 1, s: 1000, m: 60000, h: 3600000 };
  while ((m = re.exec(s)) !== null) ms += parseFloat(m[1]) * unit[m[2]];
  return ms || 15000;
}

function refreshTopics() {
  var box = document.getElementById("topics-table");
  if (!box) return;
  var auto = document.getElementById("autorefresh");
  var every = Math.max(parseDuration(box.dataset.every), 1000);
  setInterval(function () {
    if (auto && !auto.checked) return;
    fetch(box.dataset.src, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        box.replaceChildren.apply(box, Array.from(doc.body.childNodes));
      })
      .catch(function () {});
  }, every);
}

function followJob() {
  var job = document.getElementById("job");
  if (!job || job.dataset.state !== "running") return;
  var bar = document.getElementById("job-progress");
  var state = document.getElementById("job-state");
  var timer = setInterval(function () {
    fetch(job.dataset.status, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (st) {
        bar.max = st.total;
        bar.value = st.done;
        bar.textContent = st.done + " of " + st.total;
        state.textContent = st.state + ": " + st.done + " of " + st.total + (st.error ? "; " + st.error : "");
        job.dataset.state = st.state;
        if (st.state !== "running") clearInterval(timer);
      })
      .catch(function () {});
  }, 500);
}

function selectAll() {
  var all = document.getElementById("select-all");
  if (!all) return;
  all.addEventListener("change", function () {
    document.querySelectorAll('#letters-form input[name="id"]').forEach(function (c) {
      c.checked = all.checked;
    });
  });
}

document.addEventListener("DOMContentLoaded", function () {
  refreshTopics();
  followJob();
  selectAll();
});
