// The consent signature pad: records pointer strokes on canvas.signature in the canvas's own
// units and writes them, on every stroke, into the hidden input named by data-input as the JSON
// the server's DrawnSignature expects: {"width":W,"height":H,"strokes":[[[x,y],...],...]}.
// The submit button stays disabled until there is a stroke and the agreement box is ticked
// (the server checks both again).
(function () {
  "use strict";
  var canvas = document.querySelector("canvas.signature");
  if (!canvas) { return; }
  var form = canvas.closest("form");
  var input = document.getElementById(canvas.getAttribute("data-input") || "signature-data");
  var agree = document.getElementById(canvas.getAttribute("data-agree") || "agree");
  var submit = document.getElementById(canvas.getAttribute("data-submit") || "sign-consent");
  var clear = document.getElementById(canvas.getAttribute("data-clear") || "clear-signature");
  var status = document.getElementById("signature-status");
  var ctx = canvas.getContext("2d");
  var strokes = [];
  var current = null;
  var MAX_STROKES = 100, MAX_POINTS = 2000;

  function update() {
    var has = strokes.length > 0;
    if (input) {
      input.value = has ? JSON.stringify({ width: canvas.width, height: canvas.height, strokes: strokes }) : "";
    }
    if (submit) { submit.disabled = !(has && agree && agree.checked); }
    if (status) { status.textContent = has ? "Signature drawn." : "No signature yet."; }
  }

  function point(ev) {
    var r = canvas.getBoundingClientRect();
    var x = Math.round((ev.clientX - r.left) * canvas.width / Math.max(r.width, 1));
    var y = Math.round((ev.clientY - r.top) * canvas.height / Math.max(r.height, 1));
    return [Math.min(Math.max(x, 0), canvas.width), Math.min(Math.max(y, 0), canvas.height)];
  }

  function redraw() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.lineWidth = 3;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.strokeStyle = "#111";
    strokes.forEach(function (s) {
      ctx.beginPath();
      ctx.moveTo(s[0][0], s[0][1]);
      if (s.length === 1) { ctx.lineTo(s[0][0] + 0.1, s[0][1]); }
      for (var i = 1; i < s.length; i++) { ctx.lineTo(s[i][0], s[i][1]); }
      ctx.stroke();
    });
  }

  canvas.addEventListener("pointerdown", function (ev) {
    if (strokes.length >= MAX_STROKES) { return; }
    ev.preventDefault();
    if (canvas.setPointerCapture) { canvas.setPointerCapture(ev.pointerId); }
    current = [point(ev)];
    strokes.push(current);
    redraw();
  });
  canvas.addEventListener("pointermove", function (ev) {
    if (!current || current.length >= MAX_POINTS) { return; }
    ev.preventDefault();
    var p = point(ev);
    var last = current[current.length - 1];
    if (p[0] !== last[0] || p[1] !== last[1]) {
      current.push(p);
      redraw();
    }
  });
  function end() {
    if (current) {
      current = null;
      update();
    }
  }
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  canvas.addEventListener("lostpointercapture", end);

  // Keyboard drawing (no pointer needed): Space puts the pen down or lifts it, the arrow keys
  // move it, Shift moves further. The pen's place is shown as a small cross.
  var pen = [40, Math.round(canvas.height / 2)];
  var penDown = null;
  function cross() {
    redraw();
    ctx.save();
    ctx.strokeStyle = penDown ? "#0b5cad" : "#888";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(pen[0] - 6, pen[1]); ctx.lineTo(pen[0] + 6, pen[1]);
    ctx.moveTo(pen[0], pen[1] - 6); ctx.lineTo(pen[0], pen[1] + 6);
    ctx.stroke();
    ctx.restore();
  }
  canvas.addEventListener("keydown", function (ev) {
    var step = ev.shiftKey ? 40 : 10;
    var moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (ev.key === " " || ev.key === "Spacebar") {
      ev.preventDefault();
      if (penDown) { penDown = null; update(); }
      else if (strokes.length < MAX_STROKES) { penDown = [[pen[0], pen[1]]]; strokes.push(penDown); }
      cross();
    } else if (moves[ev.key]) {
      ev.preventDefault();
      pen = [Math.min(Math.max(pen[0] + moves[ev.key][0], 0), canvas.width), Math.min(Math.max(pen[1] + moves[ev.key][1], 0), canvas.height)];
      if (penDown && penDown.length < MAX_POINTS) { penDown.push([pen[0], pen[1]]); update(); }
      cross();
    }
  });
  canvas.addEventListener("focus", cross);
  canvas.addEventListener("blur", function () { if (penDown) { penDown = null; update(); } redraw(); });

  if (clear) {
    clear.addEventListener("click", function () {
      strokes = [];
      current = null;
      penDown = null;
      redraw();
      update();
    });
  }
  if (agree) { agree.addEventListener("change", update); }
  if (form) {
    form.addEventListener("submit", function (ev) {
      if (!strokes.length || (agree && !agree.checked)) { ev.preventDefault(); update(); }
    });
  }
  update();
})();
