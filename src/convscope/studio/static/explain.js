// The Explain page: one conv or pool layer on a small gray photo. The server computes everything with convscope's
// NumPy reference (POST /api/explain); this file only sends the controls and draws what comes back, so the numbers
// on the page are exactly the ones the tests check.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    sample: $("sample"), size: $("size"), kind: $("kind"), filter: $("filter"), window: $("window"),
    stride: $("stride"), padding: $("padding"), error: $("explain-error"), padded: $("padded"), output: $("output"),
    walkthrough: $("walkthrough"), value: $("value"), formula: $("formula"), layer: $("layer"),
    outputSize: $("output-size"), atLabel: $("at-label"), legend: $("output-legend"),
  };
  const state = { at: [0, 0], data: null, seq: 0, controller: null, timer: 0, outCell: 16 };

  // -- numbers ------------------------------------------------------------------------------------------------------
  // Up to 4 significant digits; -0 (a product with a zero filter weight) reads as 0.
  const fmt = (v) => (v == null ? "·" : v === 0 ? "0" : String(Number(v.toPrecision(4))));
  // Shorter labels for inside grid cells, where space is tight.
  const short = (v) => (v === 0 ? "0" : Math.abs(v) >= 100 ? String(Math.round(v)) : String(Number(v.toPrecision(3))));

  // -- colours ------------------------------------------------------------------------------------------------------
  const gray = (t) => { const g = Math.round(255 * Math.min(1, Math.max(0, t))); return [g, g, g]; };
  // Signed maps (edge filters) are easier to read blue–white–red centred on 0 than stretched gray.
  const diverging = (t) => {
    const a = Math.min(1, Math.abs(t)), w = Math.round(255 * (1 - a));
    return t < 0 ? [w, w, 255] : [255, w, w];
  };
  const css = ([r, g, b]) => `rgb(${r},${g},${b})`;
  const ink = ([r, g, b]) => (0.299 * r + 0.587 * g + 0.114 * b > 140 ? "#111" : "#f4f4f4");

  // Cells shrink for big inputs but never below 14 px: the scroll box takes the rest.
  const cellSize = (n) => Math.max(14, Math.min(30, Math.floor(480 / n)));

  // Padding is drawn tinted and hatched, from a small tile made once.
  const hatch = (() => {
    const tile = document.createElement("canvas");
    tile.width = tile.height = 6;
    const c = tile.getContext("2d");
    c.fillStyle = "#f6e7c8"; c.fillRect(0, 0, 6, 6);
    c.strokeStyle = "#c9a04f"; c.lineWidth = 1;
    c.beginPath(); c.moveTo(0, 6); c.lineTo(6, 0); c.moveTo(-1, 1); c.lineTo(1, -1); c.moveTo(5, 7); c.lineTo(7, 5); c.stroke();
    return tile;
  })();

  // Sizes the canvas for the grid (sharp on high-DPI screens) and returns its context in CSS pixels.
  function prepare(canvas, rows, cols, cell) {
    const dpr = window.devicePixelRatio || 1;
    canvas.width = cols * cell * dpr; canvas.height = rows * cell * dpr;
    canvas.style.width = `${cols * cell}px`; canvas.style.height = `${rows * cell}px`;
    canvas.dataset.rows = rows; canvas.dataset.columns = cols;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.textAlign = "center"; ctx.textBaseline = "middle";
    return ctx;
  }

  // One font size for the whole grid, small enough for its widest number; none below 7 px. All cells or none get
  // numbers: a grid where only the short ones are written reads as if the others were missing.
  function labelFont(ctx, grid, cell) {
    ctx.font = "10px system-ui, sans-serif";
    const widest = Math.max(1, ...grid.flat().filter((v) => v != null).map((v) => ctx.measureText(short(v)).width));
    const px = Math.min(cell * 0.45, (10 * (cell - 3)) / widest);
    return px >= 7 ? `${Math.floor(px * 2) / 2}px system-ui, sans-serif` : null;
  }

  // Draws every cell: colour(v, r, c) gives the fill, or null for a hatched (padding) cell.
  function drawGrid(canvas, grid, cell, colour) {
    const rows = grid.length, cols = grid[0].length, ctx = prepare(canvas, rows, cols, cell);
    const pattern = ctx.createPattern(hatch, "repeat"), font = labelFont(ctx, grid, cell);
    if (font) ctx.font = font;
    grid.forEach((row, r) => row.forEach((v, c) => {
      const rgb = colour(v, r, c), x = c * cell, y = r * cell;
      ctx.fillStyle = rgb ? css(rgb) : pattern;
      ctx.fillRect(x, y, cell, cell);
      if (v == null || !font) return;
      ctx.fillStyle = rgb ? ink(rgb) : "#7a5a12";
      ctx.fillText(short(v), x + cell / 2, y + cell / 2 + 0.5);
    }));
    // Thin grid lines so neighbouring cells of the same value stay countable.
    ctx.strokeStyle = "rgba(128,128,128,0.35)"; ctx.lineWidth = 0.5;
    ctx.beginPath();
    for (let r = 0; r <= rows; r++) { ctx.moveTo(0, r * cell); ctx.lineTo(cols * cell, r * cell); }
    for (let c = 0; c <= cols; c++) { ctx.moveTo(c * cell, 0); ctx.lineTo(c * cell, rows * cell); }
    ctx.stroke();
    return ctx;
  }

  function outline(ctx, r, c, h, w, cell) {
    ctx.lineWidth = 3; ctx.strokeStyle = "#e4572e";
    ctx.strokeRect(c * cell + 1.5, r * cell + 1.5, w * cell - 3, h * cell - 3);
  }

  // Is padded (r, c) padding? Conv padding holds real zeros, so the pads decide, not the values.
  function isPad(d, r, c) {
    const [top, , left] = d.pads, h = d.input.length, w = d.input[0].length;
    return r < top || r >= top + h || c < left || c >= left + w;
  }

  // -- drawing --------------------------------------------------------------------------------------------------------
  // Both grids are redrawn from the last answer and the current position, so hovering can move the highlight at once
  // (corner = stride × position) while the walkthrough for that position is still on its way.
  function drawGrids() {
    const d = state.data;
    if (!d) return;
    const [ho, wo] = d.output_shape, at = [Math.min(state.at[0], ho - 1), Math.min(state.at[1], wo - 1)];
    const cell = cellSize(Math.max(d.padded.length, d.padded[0].length));
    const pctx = drawGrid(el.padded, d.padded, cell, (v, r, c) => (isPad(d, r, c) ? null : gray(v / 255)));
    outline(pctx, at[0] * d.stride[0], at[1] * d.stride[1], d.window_size[0], d.window_size[1], cell);

    const values = d.output.flat().filter((v) => v != null);
    const lo = Math.min(...values), hi = Math.max(...values), span = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
    const signed = lo < 0 && hi > 0;
    const colour = (v) => (v == null ? null : signed ? diverging(v / span) : gray(hi > lo ? (v - lo) / (hi - lo) : 0.5));
    state.outCell = cellSize(Math.max(ho, wo));
    const octx = drawGrid(el.output, d.output, state.outCell, colour);
    outline(octx, at[0], at[1], 1, 1, state.outCell);
    el.output.dataset.row = at[0]; el.output.dataset.column = at[1];
    el.legend.textContent = signed
      ? `blue < 0 < red, white = 0 (range ${fmt(lo)} to ${fmt(hi)})`
      : `gray: black = ${fmt(lo)}, white = ${fmt(hi)}`;
  }

  // A small table of numbers; cells that are padding get the hatched class. tint(v) gives an optional background.
  function table(grid, corner, d, tint) {
    const t = document.createElement("table");
    t.className = "ex-table";
    grid.forEach((row, i) => {
      const tr = t.insertRow();
      row.forEach((v, j) => {
        const td = tr.insertCell();
        td.textContent = v == null ? (d.filter ? "·" : { max: "−∞", min: "+∞", avg: "·" }[d.kind]) : fmt(v);
        if (corner && isPad(d, corner[0] + i, corner[1] + j)) td.classList.add("ex-pad");
        else if (tint && v != null) { const rgb = tint(v); td.style.background = css(rgb); td.style.color = ink(rgb); }
      });
    });
    return t;
  }

  function step(caption, node) {
    const f = document.createElement("figure"), c = document.createElement("figcaption");
    c.textContent = caption;
    f.append(node, c);
    return f;
  }

  function op(text) {
    const s = document.createElement("span");
    s.className = "ex-op"; s.textContent = text;
    return s;
  }

  function drawWalkthrough() {
    const d = state.data, [i, j] = d.at, [r0, c0] = d.corner, [kh, kw] = d.window_size;
    const note = document.createElement("p");
    note.className = "ex-note";
    note.textContent = `Output (row ${i}, column ${j}) reads the ${kh}×${kw} window whose top-left corner is padded ` +
      `(row ${r0}, column ${c0}) = (${d.stride[0]}×${i}, ${d.stride[1]}×${j}): stride × position.`;
    const steps = document.createElement("div");
    steps.className = "ex-steps";
    const result = document.createElement("p");
    result.className = "ex-result";
    const pixels = (v) => gray(v / 255);
    if (d.filter) {
      const fmax = Math.max(...d.filter.flat().map(Math.abs)) || 1;
      steps.append(step("window (input)", table(d.window, d.corner, d, pixels)), op("×"),
        step("filter", table(d.filter, null, d, (v) => diverging(v / fmax))), op("="),
        step("products, element by element", table(d.products, d.corner, d, null)));
      result.textContent = `sum = ${fmt(d.value)}`;
    } else {
      steps.append(step("window (input)", table(d.window, d.corner, d, pixels)));
      const name = { max: "max", min: "min", avg: "mean" }[d.kind];
      result.textContent = `${name} = ${fmt(d.value)}`;
      if (d.kind === "avg" && d.window.flat().some((v) => v == null)) result.textContent += " (padding left out)";
    }
    el.walkthrough.replaceChildren(note, steps, result);
  }

  function show(d) {
    state.data = d;
    state.at = d.at.slice(); // the server clamps the position into the output map
    el.error.textContent = "";
    el.value.textContent = fmt(d.value);
    el.formula.textContent = d.formula;
    el.layer.textContent = d.layer;
    el.outputSize.textContent = `${d.output_shape[0]}×${d.output_shape[1]}`;
    el.atLabel.textContent = `(row ${d.at[0]}, column ${d.at[1]})`;
    drawGrids();
    drawWalkthrough();
  }

  // -- requests -------------------------------------------------------------------------------------------------------
  // FastAPI's 422 detail is a list of {loc, msg}; ours (400) is a string. Either becomes one readable line each.
  function detailText(body, status) {
    const detail = body && body.detail;
    if (Array.isArray(detail)) {
      return detail.map((e) => `${(e.loc || []).filter((p) => p !== "body").join(".")}: ${e.msg}`).join("\n");
    }
    return detail ? String(detail) : `the server answered ${status}`;
  }

  function body() {
    const kind = el.kind.value, padding = el.padding.value;
    return {
      sample: el.sample.value, size: Number(el.size.value), kind,
      kernel: kind === "conv" ? JSON.parse(el.filter.value) : null,
      window: Number(el.window.value), stride: Number(el.stride.value),
      padding: /^\d+$/.test(padding) ? Number(padding) : padding,
      row: state.at[0], column: state.at[1],
    };
  }

  // Only the latest request matters: older ones are aborted, and a late answer to one is dropped by its number.
  async function request() {
    const seq = ++state.seq;
    if (state.controller) state.controller.abort();
    const controller = (state.controller = new AbortController());
    try {
      const sent = body();
      const res = await fetch("/api/explain", {
        // x-convscope-studio: the header the server asks of every request that is not a plain read (see app.py)
        method: "POST", headers: { "Content-Type": "application/json", "x-convscope-studio": "1" },
        body: JSON.stringify(sent), signal: controller.signal,
      });
      const data = await res.json().catch(() => null);
      if (seq !== state.seq) return;
      if (!res.ok) throw new Error(detailText(data, res.status));
      show({ ...data, kind: sent.kind }); // the answer does not repeat the kind; the walkthrough needs it
    } catch (err) {
      if (err.name === "AbortError" || seq !== state.seq) return;
      el.error.textContent = err.message || String(err);
    }
  }

  // Hovering fires many events and typing a size passes through values like "2": wait ~60 ms of calm first.
  // Scheduling also outdates an answer still on its way, so it cannot pull the selection back.
  function later(ms = 60) {
    state.seq++;
    clearTimeout(state.timer);
    state.timer = setTimeout(request, ms);
  }

  function select(r, c) {
    const d = state.data;
    if (!d) return;
    r = Math.max(0, Math.min(d.output_shape[0] - 1, r)); c = Math.max(0, Math.min(d.output_shape[1] - 1, c));
    if (r === state.at[0] && c === state.at[1]) return;
    state.at = [r, c];
    drawGrids(); // the highlight moves now; the numbers follow when the answer comes
    later();
  }

  // -- controls -------------------------------------------------------------------------------------------------------
  function syncControls() {
    const conv = el.kind.value === "conv";
    $("filter-label").hidden = !conv; // a conv's window is its filter; the slider is for pools only
    $("window-label").hidden = conv;
    $("window-value").textContent = el.window.value;
    $("stride-value").textContent = el.stride.value;
  }

  for (const input of [el.sample, el.size, el.kind, el.filter, el.window, el.stride, el.padding]) {
    for (const type of ["input", "change"]) input.addEventListener(type, () => { syncControls(); later(); });
  }

  el.output.addEventListener("mousemove", (event) => {
    const box = el.output.getBoundingClientRect();
    select(Math.floor((event.clientY - box.top) / state.outCell), Math.floor((event.clientX - box.left) / state.outCell));
  });

  el.output.addEventListener("keydown", (event) => {
    const move = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] }[event.key];
    if (!move) return;
    event.preventDefault();
    select(state.at[0] + move[0], state.at[1] + move[1]);
  });

  // The first conv layer's filters of each run join the menu. Runs without one (or that fail to load) are skipped;
  // filters the server would refuse (not square, or over 7×7) are left out.
  async function loadRunFilters() {
    let runs;
    try {
      const res = await fetch("/api/runs");
      if (!res.ok) return;
      runs = await res.json();
    } catch { return; }
    const answers = await Promise.allSettled(runs.map(async (run) => {
      const res = await fetch(`/api/runs/${encodeURIComponent(run.name)}/filters`);
      if (!res.ok) throw new Error(run.name);
      return { name: run.name, ...(await res.json()) };
    }));
    for (const answer of answers) {
      if (answer.status !== "fulfilled") continue;
      const { name, layer, filters } = answer.value;
      const group = document.createElement("optgroup");
      group.label = `${name} (${layer})`;
      (filters || []).slice(0, 8).forEach((k, i) => {
        if (!Array.isArray(k) || k.length > 7 || k.some((row) => row.length !== k.length)) return;
        group.append(new Option(`${name}: filter ${i}`, JSON.stringify(k)));
      });
      if (group.children.length) el.filter.append(group);
    }
  }

  syncControls();
  request().then(loadRunFilters);
})();
