// The drawing pad of the capsules dashboard: an st.components.v2 module (dashboard/pad.py).
//
// A square canvas of data.side pixels; the pointer (mouse, pen or finger) draws round strokes
// data.width pixels wide in the colour of the active pen, data.pens[data.pen]. On pen-up, and
// only then, it sends every stroke so far as the state value "strokes":
// [{pen: k, xy: [x0, y0, x1, y1, ...]}, ...], integer pad pixels from the top-left corner.
// "Undo" takes back the last stroke and "Clear" all of them; each sends the strokes left at once.
//
// Streamlit calls this function again whenever the page sends new data (a new pen, say): the
// pad lives on in `pads`, keyed by its parent element, and only takes the new settings. A pad
// mounted afresh (the element was rebuilt) redraws data.strokes, the strokes the page last got.

const pads = new WeakMap();

function point(pad, event) {
  const box = pad.canvas.getBoundingClientRect();
  const scale = pad.side / (box.width || pad.side);
  return [Math.round((event.clientX - box.left) * scale), Math.round((event.clientY - box.top) * scale)];
}

function dot(ctx, x, y, width) {
  ctx.beginPath();
  ctx.arc(x, y, width / 2, 0, 2 * Math.PI);
  ctx.fill();
}

function paintStroke(pad, stroke) {
  const { ctx } = pad;
  const colour = pad.pens[stroke.pen] || pad.pens[0] || "#ffffff";
  ctx.strokeStyle = ctx.fillStyle = colour;
  const xy = stroke.xy;
  dot(ctx, xy[0], xy[1], pad.width);
  if (xy.length > 2) {
    ctx.beginPath();
    ctx.moveTo(xy[0], xy[1]);
    for (let i = 2; i < xy.length; i += 2) ctx.lineTo(xy[i], xy[i + 1]);
    ctx.stroke();
  }
}

function repaint(pad) {
  const { canvas, ctx } = pad;
  const ratio = window.devicePixelRatio || 1;
  const pixels = Math.round(pad.side * ratio);
  if (canvas.width !== pixels) canvas.width = canvas.height = pixels;  // resets the context too
  ctx.setTransform(pixels / pad.side, 0, 0, pixels / pad.side, 0, 0);
  ctx.fillStyle = "#000000";
  ctx.fillRect(0, 0, pad.side, pad.side);
  ctx.lineCap = ctx.lineJoin = "round";
  ctx.lineWidth = pad.width;
  for (const stroke of pad.strokes) paintStroke(pad, stroke);
}

function send(pad) {
  pad.setStateValue("strokes", pad.strokes.map((s) => ({ pen: s.pen, xy: s.xy })));
}

function configure(pad, data) {
  const side = Number(data.side) || 240;
  const width = Number(data.width) || 18;
  const pens = Array.isArray(data.pens) && data.pens.length ? data.pens.map(String) : ["#ffffff"];
  const pen = Math.min(Math.max(0, Number(data.pen) || 0), pens.length - 1);
  const changed = side !== pad.side || width !== pad.width || pens.join() !== (pad.pens || []).join();
  Object.assign(pad, { side, width, pens, pen });
  pad.root.style.setProperty("--pad-side", `${side}px`);
  pad.root.style.setProperty("--pad-pen", pens[pen]);
  pad.root.dataset.pens = String(pens.length);  // one pen: no swatch
  pad.canvas.setAttribute("aria-label", `Drawing pad, ${side} by ${side} pixels: draw a digit`);
  if (changed) repaint(pad);
}

function create(parentElement) {
  const root = document.createElement("div");
  root.className = "pad";
  root.innerHTML = `
    <canvas class="drawing-pad"></canvas>
    <div class="tools">
      <span class="pen" title="The pen's colour"></span>
      <button type="button" data-action="undo" title="Take back the last stroke">Undo</button>
      <button type="button" data-action="clear" title="Empty the pad">Clear</button>
    </div>`;
  parentElement.appendChild(root);
  const canvas = root.querySelector("canvas");
  const pad = {
    root, canvas, ctx: canvas.getContext("2d"), strokes: [], active: null, abort: new AbortController(),
  };
  const listen = (target, type, fn) => target.addEventListener(type, fn, { signal: pad.abort.signal });

  listen(canvas, "pointerdown", (event) => {
    if (pad.active !== null || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);  // moves and the pen-up come here even off the pad
    const [x, y] = point(pad, event);
    const stroke = { pen: pad.pen, xy: [x, y] };
    pad.strokes.push(stroke);
    pad.active = { id: event.pointerId, stroke };
    pad.ctx.fillStyle = pad.ctx.strokeStyle = pad.pens[pad.pen];
    dot(pad.ctx, x, y, pad.width);
  });
  listen(canvas, "pointermove", (event) => {
    if (pad.active === null || event.pointerId !== pad.active.id) return;
    const { xy } = pad.active.stroke;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const e of events.length ? events : [event]) {
      const [x, y] = point(pad, e);
      const [px, py] = xy.slice(-2);
      if (x === px && y === py) continue;
      pad.ctx.beginPath();
      pad.ctx.moveTo(px, py);
      pad.ctx.lineTo(x, y);
      pad.ctx.stroke();
      xy.push(x, y);
    }
  });
  const penUp = (event) => {
    if (pad.active === null || event.pointerId !== pad.active.id) return;
    pad.active = null;
    send(pad);  // at once: no waiting for more
  };
  // With the pointer captured, pointerleave comes only after the pen is lifted (or the capture
  // is lost): up, cancel and lost capture end a stroke.
  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) listen(canvas, type, penUp);
  listen(root, "click", (event) => {
    const action = event.target.closest("button")?.dataset.action;
    if (!action || pad.active !== null) return;
    if (action === "undo" && pad.strokes.length) pad.strokes.pop();
    else if (action === "clear") pad.strokes = [];
    else return;
    repaint(pad);
    send(pad);
  });
  return pad;
}

export default function ({ data, parentElement, setStateValue }) {
  let pad = pads.get(parentElement);
  const fresh = pad === undefined;
  if (fresh) {
    pad = create(parentElement);
    pads.set(parentElement, pad);
  }
  pad.setStateValue = setStateValue;
  configure(pad, data || {});
  if (fresh) {
    pad.strokes = (Array.isArray(data?.strokes) ? data.strokes : [])
      .filter((s) => s && Array.isArray(s.xy) && s.xy.length >= 2)
      .map((s) => ({ pen: Number(s.pen) || 0, xy: s.xy.map(Number) }));
    repaint(pad);
  }
  return () => {  // unmounted: let go of the listeners and the elements
    if (pads.get(parentElement) !== pad) return;
    pad.abort.abort();
    pad.root.remove();
    pads.delete(parentElement);
  };
}
