// Live status of the owner's verification page: polls the JSON status and reloads once the
// session is final or the provider asks for a retry (the server then renders the outcome). No framework, no inline script (CSP).
(function () {
  "use strict";
  function start() {
    var box = document.querySelector("[data-status-url]");
    if (!box || box.getAttribute("data-final") === "true") return;
    var url = box.getAttribute("data-status-url");
    var label = document.getElementById("vl-status-label");
    var current = box.getAttribute("data-status");
    var delay = 2000;
    function tick() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (data) {
            if (label && data.status_label) label.textContent = data.status_label;
            // Final, or the provider asks for a retry the page does not offer yet: the server renders it.
            var retryShown = !!document.getElementById("vl-resubmission");
            if (data.is_final || (data.resubmission_requested && !retryShown)) { window.location.reload(); return; }
            if (data.status !== current) { current = data.status; delay = 2000; }
            else { delay = Math.min(delay * 1.5, 15000); }
          }
          window.setTimeout(tick, delay);
        })
        .catch(function () { window.setTimeout(tick, Math.min(delay * 2, 30000)); });
    }
    window.setTimeout(tick, delay);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
