// Live status of the owner's verification page. Polls the status JSON (every second while the page
// is visible and the flow is active, slower when hidden or when nothing changes for minutes; the
// server decides when the provider is asked) and, when the state changes, swaps the page's live
// part for the server's rendering of it: no reload, the keyboard position kept, the new state
// announced in a live region. No framework, no inline script (CSP).
(function () {
  "use strict";
  var FAST = 1000, SLOW = 10000, HIDDEN = 15000, QUIET_AFTER = 5 * 60 * 1000;

  function start() {
    var box = document.getElementById("vl-live");
    if (!box || box.getAttribute("data-final") === "true") return;
    var url = box.getAttribute("data-status-url");
    var announce = document.getElementById("vl-announce");
    var current = box.getAttribute("data-state");
    var lastChange = Date.now();
    var timer = null;

    function delay() {
      if (document.hidden) return HIDDEN;
      return Date.now() - lastChange > QUIET_AFTER ? SLOW : FAST;
    }

    function checking(on) {
      var mark = document.getElementById("vl-checking");
      if (mark) mark.hidden = !on;
    }

    function swap(data) {
      // Keep the keyboard where it was: an element with the same id gets the focus back; focus
      // that was inside the old content and has no twin goes to the new headline.
      var active = document.activeElement;
      var hadFocus = active && box.contains(active);
      var focusId = hadFocus ? active.id : "";
      box.innerHTML = data.html;
      box.setAttribute("data-state", data.state);
      box.setAttribute("data-final", data.is_final ? "true" : "false");
      if (hadFocus) {
        var twin = focusId && document.getElementById(focusId);
        var target = twin || document.getElementById("vl-outcome") || document.getElementById("vl-resubmission");
        if (target) target.focus();
      }
      if (announce) {
        var heading = document.getElementById("vl-outcome") || document.getElementById("vl-resubmission");
        announce.textContent = heading ? heading.textContent : data.status_label;
      }
    }

    function tick() {
      timer = null;
      var slow = window.setTimeout(function () { checking(true); }, 400);
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          window.clearTimeout(slow);
          checking(false);
          if (data) {
            if (data.state !== current) {
              current = data.state;
              lastChange = Date.now();
              swap(data);
            }
            if (data.is_final) return; // nothing will change any more
          }
          schedule(delay());
        })
        .catch(function () {
          window.clearTimeout(slow);
          checking(false);
          schedule(SLOW);
        });
    }

    function schedule(ms) {
      if (timer === null) timer = window.setTimeout(tick, ms);
    }

    document.addEventListener("visibilitychange", function () {
      // Back to the tab: ask now rather than at the end of the hidden interval.
      if (!document.hidden && timer !== null) {
        window.clearTimeout(timer);
        timer = null;
        tick();
      }
    });
    schedule(FAST);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
