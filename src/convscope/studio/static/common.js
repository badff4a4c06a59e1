// Small helpers every studio page uses. The pages are clients of the JSON API (see studio/app.py).
"use strict";

async function api(url, options = {}) {
  // The JSON answer, or an Error carrying the server's one-line `detail`. Requests that change something carry the
  // studio's header: the server refuses them without it (another site cannot send it).
  const headers = {...(options.headers || {}), "x-convscope-studio": "1"};
  const response = await fetch(url, {...options, headers});
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || response.statusText);
    throw new Error(detail);
  }
  return body;
}

function fmt(value, digits = 4) {
  // Numbers as people read them: up to `digits` significant digits, "–" for none.
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (Number.isInteger(value)) return String(value);
  return Number(value.toPrecision(digits)).toString();
}

function percent(p) {
  return p === null || p === undefined ? "–" : (100 * p).toFixed(p > 0.999 || p < 0.001 ? 2 : 1) + "%";
}

function el(tag, attributes = {}, ...children) {
  // A DOM element with attributes and children (text or elements): no HTML strings, so no injection.
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function statusBadge(status) {
  // A run's or training's status as the pages show it: "stopped" means saved and resumable, so it says so.
  return el("span", {class: `status ${status.split(" ")[0]}`}, status === "stopped" ? "stopped, resumable" : status);
}

function showError(id, err) {
  const box = document.getElementById(id);
  if (box) box.textContent = err ? String(err.message || err) : "";
}

function smoothed(values, weight) {
  // TensorBoard's smoothing: an exponential moving average, debiased so the first points are not pulled to 0.
  let average = 0, n = 0;
  return values.map(v => { n += 1; average = average * weight + (1 - weight) * v; return average / (1 - weight ** n); });
}

function onImageChosen(form, errorId, send) {
  // The image form (templates/image_form.html): `send` gets FormData with the user's file (`image`) or a bundled
  // photo's name (`sample`), as POST /api/runs/NAME/predict takes them.
  form.addEventListener("submit", e => {
    e.preventDefault();
    const file = form.querySelector("#upload").files[0];
    if (!file) return showError(errorId, "choose an image file first");
    const data = new FormData();
    data.append("image", file);
    send(data);
  });
  form.querySelector("#use-sample").addEventListener("click", () => {
    const data = new FormData();
    data.append("sample", form.querySelector("#sample").value);
    send(data);
  });
}

function lineChart(svg, rows, series, options = {}) {
  // Learning curves in an <svg>: `series` = [[key, colour, label]], x = epoch. Drawn again on every update. Each
  // epoch's value is a marker whose <title> is its value on hover; a run of one epoch draws that point; accuracies
  // (keys ending in "_acc") read as percentages. `options`: smoothing (0 to 0.99: the line is the smoothed curve and
  // the raw one is drawn faintly, the markers stay on the raw values), format (a value → its text), empty (the text
  // of a chart without values).
  const width = 520, height = 260, left = 56, right = 12, top = 28, bottom = 32;  // the legend above the plot
  const smoothing = Math.min(Math.max(Number(options.smoothing) || 0, 0), 0.99);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const add = (tag, attributes, text, parent = svg) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    parent.append(node);
    return node;
  };
  const values = rows.flatMap(r => series.map(([key]) => r[key])).filter(v => v !== null && v !== undefined);
  if (!rows.length || !values.length) {
    add("text", {x: width / 2, y: height / 2, "text-anchor": "middle", class: "muted"}, options.empty || "no epoch finished yet");
    return;
  }
  const shown = options.format || (series.every(([key]) => key.endsWith("_acc")) ? percent : v => fmt(v, 3));
  let low = Math.min(...values), high = Math.max(...values);
  if (high === low) { const pad = 0.05 * (Math.abs(high) || 1); high += pad; low -= pad; }
  const last = Math.max(...rows.map(r => r.epoch));
  const x = e => last === 1 ? (left + width - right) / 2 : left + (e - 1) / (last - 1) * (width - left - right);
  const y = v => top + (1 - (v - low) / (high - low)) * (height - top - bottom);
  add("line", {x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, class: "axis"});
  add("line", {x1: left, y1: top, x2: left, y2: height - bottom, class: "axis"});
  for (let i = 0; i <= 4; i++) {  // five ticks, low to high
    const v = low + (high - low) * i / 4;
    add("text", {x: left - 4, y: y(v) + 4, "text-anchor": "end", class: "tick"}, shown(v));
  }
  add("text", {x: (left + width) / 2, y: height - 6, "text-anchor": "middle", class: "tick"},
      last === 1 ? "epoch 1" : `epoch (1–${last})`);
  series.forEach(([key, colour, label], i) => {
    const kept = rows.filter(r => r[key] !== null && r[key] !== undefined);
    if (kept.length > 1) {
      const raw = kept.map(r => `${x(r.epoch)},${y(r[key])}`).join(" ");
      if (smoothing > 0) {
        add("polyline", {points: raw, fill: "none", stroke: colour, "stroke-width": 1, opacity: 0.3,
                         "data-series": `${key}:raw`});
        const line = smoothed(kept.map(r => r[key]), smoothing);
        add("polyline", {points: kept.map((r, j) => `${x(r.epoch)},${y(line[j])}`).join(" "), fill: "none",
                         stroke: colour, "stroke-width": 2, "data-series": key, "data-smoothed": smoothing});
      } else {
        add("polyline", {points: raw, fill: "none", stroke: colour, "stroke-width": 2, "data-series": key});
      }
    }
    for (const r of kept) {
      const dot = add("circle", {cx: x(r.epoch), cy: y(r[key]), r: 3.5, fill: colour, "data-series": key});
      add("title", {}, `${label}, epoch ${r.epoch}: ${shown(r[key])}`, dot);
    }
    add("text", {x: left + 8 + i * 120, y: 16, fill: colour, class: "legend"}, label);
  });
}
