// "Try it": send an image to the run, show its top classes, HiResCAM for a chosen class, every layer's feature maps;
// for a detector, its boxes with a score slider. The uploaded image is kept by the server under a random token.
"use strict";

function startTry(name) {
  const base = `/api/runs/${encodeURIComponent(name)}`;
  let token = null, found = null, picture = null;

  async function predict(form) {
    showError("try-error", null);
    try {
      const answer = await api(`${base}/predict`, {method: "POST", body: form});
      token = answer.image;
      if (answer.detector) await showDetections(); else showClasses(answer);
      showLayers(answer.layers);
    } catch (err) { showError("try-error", err); }
  }

  function showClasses(answer) {
    document.getElementById("classifier").hidden = false;
    // conversion already starts with the upload ("RGB 459×499 → RGB 32×32"): said once, not twice
    document.getElementById("conversion").textContent = `as the network sees it: ${answer.conversion}`;
    // the upload as convscope decoded it, beside the fitted image enlarged by whole pixels (each input pixel a square)
    document.getElementById("sent").src = `/api/uploads/${token}`;
    document.getElementById("seen").src = answer.seen;
    document.getElementById("seen-shape").textContent = answer.conversion.split("→").pop().trim() + ", enlarged";
    document.querySelector("#top tbody").replaceChildren(...answer.top.map(({class: c, probability: p}) => el("tr", {},
      el("td", {}, c), el("td", {class: "num"}, percent(p)),
      el("td", {style: "width: 160px"}, el("div", {class: "bar", style: `width: ${Math.max(1, 100 * p)}%`})))));
    const select = document.getElementById("gradcam-class");
    select.replaceChildren(...answer.classes.map(c => el("option", {value: c}, c)));
    select.value = answer.top[0].class;
    showGradcam();
  }

  function showGradcam() {
    const chosen = document.getElementById("gradcam-class").value;
    document.getElementById("gradcam").src = `${base}/gradcam?image=${token}&class_name=${encodeURIComponent(chosen)}`;
  }

  async function showDetections() {
    document.getElementById("detector").hidden = false;
    found = await api(`${base}/detections?image=${token}&min_score=0.05`);
    const canvas = document.getElementById("detections");  // the image's own shape, 640 pixels wide
    canvas.height = Math.round(canvas.width * found.height / found.width);
    picture = new Image();
    picture.onload = drawBoxes;
    picture.src = `/api/uploads/${token}`;  // the upload as convscope decoded it (PNG), not the bytes sent
  }

  function drawBoxes() {
    // Boxes above the slider's score, in the image's own pixels scaled to the canvas.
    const canvas = document.getElementById("detections"), context = canvas.getContext("2d");
    const least = Number(document.getElementById("min-score").value);
    document.getElementById("min-score-value").textContent = least.toFixed(2);
    if (!found) return;
    const scale = Math.min(canvas.width / found.width, canvas.height / found.height);
    context.fillStyle = "#eef1f5";
    context.fillRect(0, 0, canvas.width, canvas.height);
    if (picture && picture.complete && picture.naturalWidth) context.drawImage(picture, 0, 0, found.width * scale, found.height * scale);
    const shown = found.objects.filter(o => o.drawn !== false && o.score >= least);
    context.lineWidth = 2;
    context.font = "13px system-ui";
    for (const o of shown) {
      const [x1, y1, x2, y2] = o.box.map(v => v * scale);
      context.strokeStyle = "#2f6fde";
      context.strokeRect(x1, y1, x2 - x1, y2 - y1);
      context.fillStyle = "#2f6fde";
      context.fillText(`${o.label} ${o.score.toFixed(2)}`, x1 + 2, Math.max(12, y1 - 4));
    }
    document.getElementById("box-count").textContent = `${shown.length} of ${found.objects.length} boxes`;
  }

  function showLayers(layers) {
    document.getElementById("inside").hidden = false;
    const select = document.getElementById("layer");
    select.replaceChildren(...layers.map(l => el("option", {value: l}, l)));
    showMaps();
  }

  async function showMaps() {
    try {
      const layer = document.getElementById("layer").value;
      const maps = await api(`${base}/featuremaps?image=${token}&layer=${encodeURIComponent(layer)}`);
      document.getElementById("layer-shape").textContent = `${maps.label}: output ${maps.shape}` +
        (maps.shown < Number(maps.shape.split("×")[2]) ? ` (the first ${maps.shown} maps)` : "");
      document.getElementById("maps").replaceChildren(...maps.maps.map(m => el("figure", {
          "data-index": m.index, onclick: () => enlarge(m, maps)},
        el("img", {src: m.png, width: 96, height: 96, alt: `map ${m.index}`}),
        el("figcaption", {}, `${m.index}: ${fmt(m.min, 3)} … ${fmt(m.max, 3)}`))));
    } catch (err) { showError("try-error", err); }
  }

  function enlarge(map, maps) {
    const box = document.getElementById("enlarged");
    box.querySelector("img").src = map.png;
    box.querySelector("p").textContent = `${maps.layer}, map ${map.index} of ${maps.shape}: values ${fmt(map.min)} to ${fmt(map.max)} (click to close)`;
    box.classList.add("open");
  }

  document.getElementById("enlarged").addEventListener("click", e => e.currentTarget.classList.remove("open"));
  onImageChosen(document.getElementById("upload-form"), "try-error", predict);
  document.getElementById("gradcam-class").addEventListener("change", showGradcam);
  document.getElementById("layer").addEventListener("change", showMaps);
  document.getElementById("min-score").addEventListener("input", drawBoxes);
}
