// carevault staff UI: the idle warning and lock, and the privacy screen. No patient data is
// ever written to localStorage or sessionStorage; this file keeps nothing between pages.
(function () {
  "use strict";
  var body = document.body;

  // ---- privacy screen: blur everything in <main> until the user shows it again ----
  var shield = document.getElementById("privacy-shield");
  var toggle = document.getElementById("privacy-toggle");
  function privacy(on) {
    if (!shield || !toggle) return;
    body.classList.toggle("privacy-on", on);
    shield.hidden = !on;
    toggle.setAttribute("aria-pressed", on ? "true" : "false");
    var main = document.getElementById("main");
    if (main) {
      if (on) main.setAttribute("inert", ""); else main.removeAttribute("inert");
      main.setAttribute("aria-hidden", on ? "true" : "false");
    }
    if (on) { var off = document.getElementById("privacy-off"); if (off) off.focus(); }
    else toggle.focus();
  }
  if (toggle) toggle.addEventListener("click", function () { privacy(!body.classList.contains("privacy-on")); });
  var off = document.getElementById("privacy-off");
  if (off) off.addEventListener("click", function () { privacy(false); });
  document.addEventListener("keydown", function (e) {
    if (e.altKey && e.shiftKey && (e.key === "P" || e.key === "p" || e.code === "KeyP")) {
      e.preventDefault();
      privacy(!body.classList.contains("privacy-on"));
    }
  });

  // ---- idle warning and lock (the server's idle limit is the authority) ----
  var idle = parseInt(body.getAttribute("data-idle-secs") || "0", 10);
  var csrf = body.getAttribute("data-csrf") || "";
  if (!idle || !document.getElementById("idle-warning")) return;
  var warning = document.getElementById("idle-warning");
  var count = document.getElementById("idle-count");
  var stay = document.getElementById("idle-stay");
  var lead = Math.max(1, Math.min(60, Math.floor(idle / 4)));
  var deadline = Date.now() + idle * 1000; // the page's request just used the session
  var timer = null;

  function lock() {
    // Remove patient information from the page before anything else, then end the session.
    var main = document.getElementById("main");
    if (main) main.replaceChildren();
    document.querySelectorAll("[data-phi]").forEach(function (n) { n.remove(); });
    warning.hidden = true;
    document.title = "Locked · carevault";
    body.classList.add("locked");
    window.location.replace("/ui/locked");
  }

  var warned = false;
  function tick() {
    if (timer) clearTimeout(timer);
    var left = deadline - Date.now();
    if (left <= 0) { check(true); return; }
    if (left <= lead * 1000) {
      if (!warned) { warned = true; check(false); return; }
      if (warning.hidden) { warning.hidden = false; stay.focus(); }
      count.textContent = String(Math.ceil(left / 1000));
      timer = setTimeout(tick, Math.min(1000, left));
    } else {
      warned = false;
      warning.hidden = true;
      timer = setTimeout(tick, left - lead * 1000);
    }
  }

  // Before warning and before locking, ask the server how long the session has left (reading
  // it is not use): another tab may have used the session meanwhile.
  function check(atEnd) {
    fetch("/ui/session/left", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : { seconds_left: 0 }; })
      .then(function (j) {
        var left = j.seconds_left || 0;
        if (left <= 0 || (atEnd && left <= 1)) { lock(); return; }
        deadline = Date.now() + left * 1000;
        if (left > lead) warned = false;
        tick();
      })
      .catch(function () { if (atEnd) lock(); else tick(); });
  }

  stay.addEventListener("click", function () {
    fetch("/ui/session/keepalive", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } })
      .then(function (r) {
        if (r.status === 204) { deadline = Date.now() + idle * 1000; warned = false; warning.hidden = true; tick(); }
        else lock();
      })
      .catch(lock);
  });

  tick();
})();
