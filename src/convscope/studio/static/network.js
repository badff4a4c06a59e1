// "The whole network": one image through the run's network, a column per layer (the input as the network sees it,
// each layer's first maps at one size per value, the dense head's top classes); a click on a conv layer's map asks
// the server how that one value was computed (window × kernel per input channel, sums, bias, activation).
"use strict";

const COLUMN = 84;  // a column's least content width in px (its text wraps inside); a vector layer's strip is this wide
const MAPS_TALL = 380;  // px: a layer's maps stand at most this tall before they take another grid column
const GAP = 4;  // px between maps (.net-maps gap)

function signed(value, digits) {
  // " + 0.12" or " − 0.12": a term added to a sum, its sign as the operator.
  return value < 0 ? ` − ${fmt(-value, digits)}` : ` + ${fmt(value, digits)}`;
}

function totalSentence(walk) {
  // The channel sums (listed when 16 or fewer), the bias, the activation: one sentence, as a person would say it.
  const [first, ...rest] = walk.sums;
  const listed = walk.channels_total <= 16 ? `: ${fmt(first, 4)}${rest.map(s => signed(s, 4)).join("")}` : "";
  const sum = walk.total - walk.bias;
  const bias = walk.has_bias ? `${signed(walk.bias, 4)} (bias) = ${fmt(walk.total, 6)}` : " no bias";
  const act = walk.activation === "none" ? `no activation: the value is ${fmt(walk.value, 6)}`
    : `${walk.activation}(${fmt(walk.total, 6)}) = ${fmt(walk.value, 6)}`;
  return `sum of the ${walk.channels_total} channel sums${listed} = ${fmt(sum, 6)};${bias}; ${act}`;
}

function startNetwork(name) {
  const base = `/api/runs/${encodeURIComponent(name)}`;
  let token = null, scale = 3, picked = null;  // picked: the clicked map (its PNG and H×W)

  async function show(form) {
    showError("network-error", null);
    try {
      const answer = await api(`${base}/predict`, {method: "POST", body: form});
      token = answer.image;
      const net = await api(`${base}/network?image=${token}`);
      draw(net);
    } catch (err) { showError("network-error", err); }
  }

  function side(h) {
    // Pixels for h values: the same scale for every layer (whole pixels per value where it fits), at least 12.
    return Math.max(12, Math.round(h * scale));
  }

  function scales(h) {
    // The scales to try, largest first: the input drawn about 112 px, then smaller until the layers fit in one row.
    if (h >= 112) return [112 / h, 84 / h, 64 / h];
    const most = Math.max(1, Math.floor(112 / h));
    return Array.from({length: most}, (_, i) => most - i);
  }

  function draw(net) {
    document.getElementById("detail").hidden = true;
    document.getElementById("network-help").hidden = false;
    document.getElementById("network-click").textContent = net.detail_layers.length
      ? `Click a value of a conv layer's map (${net.detail_layers.join(", ")}) to see how it was computed.`
      : "This network's own layers have no conv layer to walk through: its base's blocks are shown, but not walked.";
    document.getElementById("network-conversion").textContent = `as the network sees it: ${net.input.conversion}`;
    const [h] = net.input.shape.split("×").map(Number);
    const row = document.getElementById("network");
    // The network reads left to right: the largest scale at which every column stays on the first row.
    for (scale of scales(h)) {
      const columns = [inputColumn(net, h), ...net.layers.map(layerColumn)];
      if (net.top.length) columns.push(topColumn(net.top));
      row.replaceChildren(...columns);
      if (columns.every(c => c.offsetTop === columns[0].offsetTop)) break;
    }
  }

  function inputColumn(net, h) {
    return el("div", {class: "net-layer input", style: `width: ${Math.max(COLUMN, side(h))}px`},
      el("h3", {}, "input"), el("div", {class: "kind"}, "as the network sees it"),
      el("div", {class: "shape"}, net.input.shape),
      el("div", {class: "net-maps"}, el("img", {src: net.input.png, width: side(h), height: side(h), alt: "the input"})));
  }

  function topColumn(top) {
    // Bars in pixels of a fixed 60 px track: proportional to the probability whatever the column's width.
    return el("div", {class: "net-layer top"}, el("h3", {}, "prediction"),
      el("div", {class: "kind"}, "softmax of the last layer"),
      el("table", {class: "net-top"}, el("tbody", {}, ...top.map(({class: c, probability: p}) => el("tr", {},
        el("td", {}, c), el("td", {class: "num"}, percent(p)),
        el("td", {}, el("div", {class: "track"},
          el("div", {class: "bar", style: `width: ${Math.max(1, Math.round(60 * p))}px`}))))))));
  }

  function grid(n, h, w) {
    // Columns for n maps of h×w px: as many as fit in the column's least width, more when the maps would stand
    // taller than MAPS_TALL (conv1's eight large maps: two columns of four).
    const rows = Math.max(1, Math.floor((MAPS_TALL + GAP) / (h + GAP)));
    return Math.min(n, Math.max(Math.ceil(n / rows), Math.floor((COLUMN + GAP) / (w + GAP))));
  }

  function layerColumn(layer) {
    const column = el("div", {class: `net-layer ${layer.kind}${layer.detail ? " has-detail" : ""}`, "data-layer": layer.name},
      el("h3", {}, layer.name), el("div", {class: "kind"}, layer.label),
      el("div", {class: "shape"}, layer.shape_text),
      el("div", {class: "kind"}, `values ${fmt(layer.min, 3)} … ${fmt(layer.max, 3)}`));
    if (layer.strip) {
      column.style.width = `${COLUMN}px`;
      column.append(el("img", {class: "net-strip", src: layer.strip, alt: `${layer.name} values`}),
        el("div", {class: "kind"}, layer.strip_values < layer.shape[0] ? `the first ${layer.strip_values} values` : `${layer.shape[0]} values`));
      return column;
    }
    const [h, w] = layer.shape, cols = grid(layer.maps.length, side(h), side(w));
    column.style.width = `${Math.max(COLUMN, cols * side(w) + (cols - 1) * GAP)}px`;
    const maps = el("div", {class: "net-maps", style: `grid-template-columns: repeat(${cols}, ${side(w)}px)`});
    for (const m of layer.maps) {
      const img = el("img", {src: m.png, width: side(w), height: side(h), alt: `${layer.name} map ${m.index}`,
        title: `${layer.name}, map ${m.index}`, "data-index": m.index});
      if (layer.detail) img.addEventListener("click", e => pick(e, layer, m.index));
      maps.append(img);
    }
    column.append(maps);
    if (layer.more > 0) column.append(el("div", {class: "kind"}, `+${layer.more} more`));
    return column;
  }

  async function pick(event, layer, filter) {
    // The value under the pointer: its row and column in the map's own H×W.
    const img = event.currentTarget, box = img.getBoundingClientRect();
    const [h, w] = layer.shape;
    const row = Math.min(h - 1, Math.max(0, Math.floor((event.clientY - box.top) / box.height * h)));
    const column = Math.min(w - 1, Math.max(0, Math.floor((event.clientX - box.left) / box.width * w)));
    document.querySelectorAll(".net-maps img.picked").forEach(i => i.classList.remove("picked"));
    img.classList.add("picked");
    picked = {src: img.src, h, w};
    await showDetail(layer.name, filter, row, column);
  }

  async function showDetail(layer, filter, row, column) {
    showError("network-error", null);
    try {
      const q = `image=${token}&layer=${encodeURIComponent(layer)}&filter=${filter}&row=${row}&column=${column}`;
      drawDetail(await api(`${base}/network/detail?${q}`));
    } catch (err) { showError("network-error", err); }
  }

  function numbers(caption, rows, padding) {
    return el("table", {class: "nums"}, el("caption", {}, caption), el("tbody", {}, ...rows.map((r, i) => el("tr", {},
      ...r.map((v, j) => el("td", {class: padding && padding[i][j] ? "pad" : ""}, fmt(v, 3)))))));
  }

  function drawDetail(walk) {
    const section = document.getElementById("detail");
    section.hidden = false;
    const check = walk.agrees
      ? el("span", {class: "ok"}, ` ✓ the network's own output: ${fmt(walk.network, 6)}`)
      : el("span", {class: "bad"}, ` ✗ the network's own output is ${fmt(walk.network, 6)} (difference ${fmt(walk.difference, 3)})`);
    document.getElementById("walk-head").replaceChildren(
      `${walk.layer} (${walk.label}), filter ${walk.filter}, row ${walk.row}, column ${walk.column}: `,
      el("strong", {id: "walk-value"}, fmt(walk.value, 6)), check);
    if (picked) {  // the output map with the value's square marked, beside the sentence
      const k = Math.max(2, Math.floor(100 / Math.max(picked.h, picked.w)));
      document.getElementById("walk-output").replaceChildren(el("div", {class: "frame"},
        el("img", {src: picked.src, width: picked.w * k, height: picked.h * k, alt: `${walk.layer} map ${walk.filter}`}),
        el("div", {class: "win", style: `left: ${walk.column * k + 1}px; top: ${walk.row * k + 1}px; width: ${k}px; height: ${k}px`})),
        el("div", {class: "kind"}, `${walk.layer}, map ${walk.filter} (${walk.output_shape})`));
    }
    const [top, bottom, left, right] = walk.pads;
    document.getElementById("walk-source").textContent =
      `It reads ${walk.source === "input" ? "the input (pixels / 255, standardised with the run's mean and std)" : `${walk.source}'s maps`}` +
      ` (${walk.input_shape}), padded ${top} top, ${bottom} bottom, ${left} left, ${right} right (blue: padding, zeros);` +
      ` a ${walk.size[0]}×${walk.size[1]} window per input channel meets that channel's kernel of filter ${walk.filter}.`;
    const [ph, pw] = walk.padded_shape, k = Math.max(2, Math.floor(120 / Math.max(ph, pw)));
    document.getElementById("channels").replaceChildren(...walk.channels.map(ch => el("div", {class: "channel"},
      el("h4", {}, `input channel ${ch.index}: sum ${fmt(ch.sum, 4)}`),
      el("div", {class: "grids"},
        el("div", {class: "frame"}, el("img", {src: ch.map, width: pw * k, height: ph * k, alt: `channel ${ch.index}`}),
          el("div", {class: "win", style: `left: ${walk.corner[1] * k + 1}px; top: ${walk.corner[0] * k + 1}px;` +
            ` width: ${walk.size[1] * k}px; height: ${walk.size[0] * k}px`})),
        numbers("window", ch.window, walk.in_padding), numbers("× kernel", ch.kernel),
        numbers("= products", ch.products, walk.in_padding)))));
    const more = walk.channels_total - walk.channels.length;
    document.getElementById("walk-more").textContent = more > 0
      ? `+${more} more input channels: their sums are in the total below` : "";
    document.getElementById("walk-total").textContent = totalSentence(walk);
    document.getElementById("walk-note").textContent = walk.note;
    section.scrollIntoView({behavior: "instant", block: "start"});
  }

  onImageChosen(document.getElementById("network-form"), "network-error", show);
}
