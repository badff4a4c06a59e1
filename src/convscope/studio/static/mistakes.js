// Mistakes: a classifier's most-confused pairs (GET /api/runs/NAME/mistakes), and for the chosen pair a gallery of its
// test images, each as the network took it beside its HiResCAM map for the true and for the predicted class
// (GET /api/runs/NAME/mistakes/INDEX, data URLs). The images load one after another, the most confidently wrong first.
"use strict";

function startMistakes(name) {
  const base = `/api/runs/${encodeURIComponent(name)}/mistakes`;
  const status = document.getElementById("mistakes-status");
  let shown = 0;  // which gallery is being filled: a click on another pair stops the one before

  async function load() {
    let found;
    try {
      found = await api(base);
    } catch (err) {
      status.textContent = "";
      showError("mistakes-error", err);
      return;
    }
    const tested = found.tested.toLocaleString();
    if (!found.pairs.length) {
      status.textContent = `No mistakes: every one of the ${tested} test images is predicted right (${percent(found.accuracy)}).`;
      return;
    }
    status.textContent = `${found.wrong.toLocaleString()} of ${tested} test images are predicted wrong `
      + `(accuracy ${percent(found.accuracy)}); ${found.pairs.length} pair${found.pairs.length === 1 ? "" : "s"}`
      + (found.pairs.length === found.most_pairs ? ` shown, the ${found.most_pairs} largest` : "") + ".";
    document.getElementById("found").hidden = false;
    const largest = found.pairs[0].count;
    const rows = found.pairs.map(pair => el("tr", {"data-pair": pair.number, onclick: () => choose(pair, rows)},
      el("td", {}, pair.true), el("td", {class: "muted"}, "→"), el("td", {}, pair.predicted),
      el("td", {class: "num"}, pair.count.toLocaleString()),
      el("td", {}, el("div", {class: "track"}, el("div", {class: "bar", style: `width: ${100 * pair.count / largest}%`})))));
    document.querySelector("#pairs tbody").replaceChildren(...rows);
    choose(found.pairs[0], rows);
  }

  async function choose(pair, rows) {
    const mine = ++shown;
    rows.forEach((row, i) => row.classList.toggle("chosen", i === pair.number));
    document.getElementById("pair-title").textContent = `${pair.true} predicted as ${pair.predicted}: ${pair.count.toLocaleString()} image${pair.count === 1 ? "" : "s"}`;
    document.getElementById("pair-note").textContent = pair.count > pair.images.length
      ? `the ${pair.images.length} the network was most sure of are shown` : "";
    const gallery = document.getElementById("gallery");
    gallery.replaceChildren();
    showError("mistakes-error", null);
    for (const image of pair.images) {
      let maps;
      try {
        maps = await api(`${base}/${image.index}`);
      } catch (err) {
        if (mine === shown) showError("mistakes-error", err);
        return;
      }
      if (mine !== shown) return;  // another pair was chosen meanwhile
      // each panel: the picture, then what it is and the probability on a line each (the figure keeps its width)
      const panel = (src, what, value) => el("div", {}, el("img", {src, alt: `${what} ${value}`.trim()}),
        el("div", {class: "what"}, what), el("div", {}, value));
      gallery.append(el("figure", {"data-index": image.index},
        el("div", {class: "trio"},
          panel(maps.image, `test image ${image.index}`, maps.shape),
          panel(maps.true_map, `true: ${pair.true}`, percent(image.true_probability)),
          panel(maps.predicted_map, `predicted: ${pair.predicted}`, percent(image.predicted_probability))),
        el("figcaption", {class: "muted"}, `${maps.method} at layer ${maps.layer}`)));
    }
  }

  load();
}
