// Compare runs: tick runs in the list (the address keeps them: /compare?runs=a,b), then their curves on one chart
// per task (a colour per run; validation solid, training dashed), their settings side by side with the differing
// rows marked, their per-class numbers aligned by class, and one image through every run (top classes and HiResCAM,
// or a detector's boxes). A client of /api/runs, /api/compare, /api/runs/NAME/predict and /api/compare/top (studio/compare.py).
"use strict";

const COLOURS = ["#2f6fde", "#e07b00", "#157347", "#c0392b", "#7a3ed6", "#8c564b", "#d63384", "#0f8b8d"];
const METRIC_NAMES = {precision: "precision", recall: "recall", f1: "F1", support: "test images", ap50: "AP@0.5"};

function startCompare(most) {
  let chosen = new URLSearchParams(location.search).get("runs")?.split(",").map(s => s.trim()).filter(Boolean) || [];
  chosen = [...new Set(chosen)];
  let compared = null, asked = 0, prediction = null;
  const colour = name => COLOURS[compared.runs.findIndex(r => r.name === name) % COLOURS.length];

  async function showPicker() {
    try {
      const runs = await api("/api/runs");
      document.querySelector("#picker tbody").replaceChildren(...runs.map(run => el("tr", {"data-run": run.name},
        el("td", {}, el("input", {type: "checkbox", value: run.name, "aria-label": `compare ${run.name}`, onchange: pick})),
        el("td", {}, el("a", {href: `/runs/${encodeURIComponent(run.name)}`}, run.name)),
        el("td", {}, run.task), el("td", {}, run.model), el("td", {}, run.data),
        el("td", {class: "num"}, `${run.epochs} / ${run.planned_epochs}`),
        el("td", {class: "num"}, run.score === null ? "–" : `${run.score_name} ${run.task === "detection" ? fmt(run.score, 3) : percent(run.score)}`))));
      marks();
    } catch (err) { showError("compare-error", err); }
    load();
  }

  function marks() {
    // The ticks follow `chosen`; a full choice greys out the rest.
    for (const box of document.querySelectorAll("#picker input[type=checkbox]")) {
      box.checked = chosen.includes(box.value);
      box.disabled = !box.checked && chosen.length >= most;
    }
    document.getElementById("pick-note").textContent = chosen.length < 2
      ? `Tick ${chosen.length ? "one more run" : "two or more runs"} to compare.`
      : `Comparing ${chosen.join(", ")}${chosen.length >= most ? ` (at most ${most} at once)` : ""}.`;
  }

  function pick(event) {
    const name = event.target.value;
    chosen = event.target.checked ? [...chosen, name] : chosen.filter(n => n !== name);
    const query = chosen.length ? `?runs=${chosen.map(encodeURIComponent).join(",")}` : "";
    history.replaceState(null, "", `/compare${query}`);
    marks();
    load();
  }

  async function load() {
    const ticket = ++asked;  // a quicker second choice wins over a slower first answer
    showError("compare-error", null);
    prediction = null;
    document.getElementById("image-shown").hidden = true;
    if (chosen.length < 2) {
      document.getElementById("compared").hidden = true;
      document.getElementById("notes").replaceChildren();
      return;
    }
    try {
      const answer = await api(`/api/compare?runs=${chosen.map(encodeURIComponent).join(",")}`);
      if (ticket !== asked) return;
      compared = answer;
      document.getElementById("notes").replaceChildren(...answer.notes.map(n => el("li", {}, n)));
      drawCurves();
      showSettings();
      showPerClass();
      document.getElementById("compared").hidden = false;
    } catch (err) {
      if (ticket !== asked) return;
      document.getElementById("compared").hidden = true;
      showError("compare-error", err);
    }
  }

  function drawCurves() {
    const legend = document.getElementById("legend");
    legend.replaceChildren(...compared.runs.map(run => el("span", {"data-run": run.name},
        el("span", {class: "swatch", style: `border-color: ${colour(run.name)}`}), run.name)),
      el("span", {class: "muted"}, el("span", {class: "swatch", style: "border-color: #555"}), "validation"),
      el("span", {class: "muted"}, el("span", {class: "swatch dashed", style: "border-color: #555"}), "training"));
    document.getElementById("charts").replaceChildren(...compared.curves.map(group => {
      const loss = svg({class: "chart", "data-task": group.task, "data-chart": "loss"});
      const score = svg({class: "chart", "data-task": group.task, "data-chart": "score"});
      chart(loss, group, group.loss);
      chart(score, group, group.score);
      const titled = compared.curves.length > 1 ? [el("h3", {}, `${group.task}: ${group.runs.join(", ")}`)] : [];
      return el("div", {}, ...titled, el("div", {class: "cards"},
        el("div", {class: "card"}, el("h3", {}, `Loss: ${group.loss_name}`), loss),
        el("div", {class: "card"}, el("h3", {}, group.score_name[0].toUpperCase() + group.score_name.slice(1)), score)));
    }));
  }

  function svg(attributes) {
    // el() makes HTML elements; a chart is an <svg> in the SVG namespace.
    const node = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
    return node;
  }

  function chart(svg, group, keys) {
    // common.js's lineChart with one series per run and key ("RUN:val_loss"); then training dashed and hollow, and
    // the legend above the charts instead of one label per series (two per run would not fit).
    const series = group.runs.flatMap(run => keys.map(key =>
      [`${run}:${key}`, colour(run), `${run} ${key.startsWith("train_") ? "training" : "validation"}`]));
    lineChart(svg, group.rows, series);
    svg.querySelectorAll("text.legend").forEach(node => node.remove());
    svg.querySelectorAll("[data-series]").forEach(node => {
      if (!node.getAttribute("data-series").split(":")[1].startsWith("train_")) return;
      if (node.tagName === "polyline") node.setAttribute("stroke-dasharray", "6 4");
      else { node.setAttribute("stroke", node.getAttribute("fill")); node.setAttribute("fill", "white"); }
    });
  }

  function shown(value) {
    return typeof value === "number" ? fmt(value, 4) : value === null || value === undefined ? "–" : String(value);
  }

  function showSettings() {
    const table = document.getElementById("settings");
    table.tHead.replaceChildren(el("tr", {}, el("th", {}, "setting"),
      ...compared.runs.map(run => el("th", {style: `color: ${colour(run.name)}`}, run.name))));
    const only = document.getElementById("only-differences").checked;
    table.tBodies[0].replaceChildren(...compared.settings.filter(row => !only || row.differs).map(row =>
      el("tr", {class: row.differs ? "differs" : "", "data-setting": row.setting},
        el("th", {}, row.setting), ...row.values.map(v => el("td", {}, shown(v))))));
  }

  function showPerClass() {
    const table = compared.per_class, select = document.getElementById("metric");
    const before = select.value;
    // Classifiers and detectors together: no number is common to both, so the first choice is each run's own.
    const mixed = table.metrics.includes("f1") && table.metrics.includes("ap50");
    const own = mixed ? [el("option", {value: "own"}, "each run's own: F1 (classifier), AP@0.5 (detector)")] : [];
    select.replaceChildren(...own, ...table.metrics.map(m => el("option", {value: m}, METRIC_NAMES[m] || m)));
    if ([...select.options].some(o => o.value === before)) select.value = before;
    else select.value = mixed ? "own" : table.metrics.includes("f1") ? "f1" : table.metrics[0] || "";
    document.getElementById("per-class-notes").replaceChildren(...table.notes.map(n => el("li", {}, n)));
    drawPerClass();
  }

  function drawPerClass() {
    const table = compared.per_class, metric = document.getElementById("metric").value;
    const names = compared.runs.map(run => run.name), node = document.getElementById("per-class");
    node.tHead.replaceChildren(el("tr", {}, el("th", {}, "class"),
      ...names.map(n => el("th", {class: "num", style: `color: ${colour(n)}`}, n))));
    node.tBodies[0].replaceChildren(...table.rows.map(row => {
      const value = numbers => metric === "own" ? numbers.f1 ?? numbers.ap50 : numbers[metric];
      const values = names.map(n => row.values[n] ? value(row.values[n]) : undefined);
      const numbers = values.filter(v => typeof v === "number");
      const best = metric !== "support" && numbers.length > 1 ? Math.max(...numbers) : null;
      return el("tr", {"data-class": row.class}, el("td", {}, row.class), ...values.map((v, i) =>
        row.values[names[i]] === null
          ? el("td", {class: "num muted", title: `not one of ${names[i]}'s classes`}, "no such class")
          : el("td", {class: `num${v === best && best !== null ? " best" : ""}`}, metric === "support" ? shown(v) : fmt(v, 3))));
    }));
  }

  async function predict(form) {
    // Uploaded once, to the first run (the studio's one upload route, bounded as uploads are); its token serves
    // every run: their top classes (/api/compare/top) and each one's class map or boxes.
    showError("image-error", null);
    const ticket = asked, runs = chosen.map(encodeURIComponent);
    try {
      const upload = await api(`/api/runs/${runs[0]}/predict`, {method: "POST", body: form});
      const tops = await api(`/api/compare/top?runs=${runs.join(",")}&image=${upload.image}`);
      if (ticket !== asked) return;  // other runs were picked meanwhile
      prediction = {image: upload.image, upload: upload.upload, runs: tops.runs};
      showPredictions();
    } catch (err) { showError("image-error", err); }
  }

  function showPredictions() {
    const token = prediction.image;
    document.getElementById("image-shown").hidden = false;
    document.getElementById("image").src = `/api/uploads/${token}`;
    document.getElementById("image-note").textContent = `${prediction.upload}: the same upload for every run`;
    // A class map for a class every classifier knows, or each run's own top class.
    const classifiers = prediction.runs.filter(r => !r.detector);
    const common = classifiers.length ? classifiers[0].classes.filter(c => classifiers.every(r => r.classes.includes(c))) : [];
    const select = document.getElementById("cam-class");
    select.replaceChildren(el("option", {value: ""}, "each run's top class"), ...common.map(c => el("option", {value: c}, c)));
    document.getElementById("cam-class-label").hidden = classifiers.length === 0;
    document.getElementById("predictions").replaceChildren(...prediction.runs.map(run => runCard(run, token)));
    showMaps();
  }

  function runCard(run, token) {
    const card = el("div", {class: "card run-card", "data-run": run.name}, el("h3", {style: `color: ${colour(run.name)}`}, run.name));
    if (run.detector) {
      card.append(el("p", {class: "muted boxes-caption"}, "a detector: its boxes (score ≥ 0.3), no class map"),
        el("canvas", {width: 280, height: 210}));
      drawBoxes(card.querySelector("canvas"), run.name, token);
      return card;
    }
    card.append(el("p", {class: "muted"}, run.conversion),
      el("table", {class: "top"}, el("tbody", {}, ...run.top.map(({class: c, probability: p}) => el("tr", {},
        el("td", {}, c), el("td", {class: "num"}, percent(p)),
        el("td", {style: "width: 100px"}, el("div", {class: "bar", style: `width: ${Math.max(1, 100 * p)}%`})))))),
      el("p", {class: "cam-caption muted"}), el("img", {class: "picture cam", alt: `HiResCAM of ${run.name}`, width: 224}));
    return card;
  }

  function showMaps() {
    const wanted = document.getElementById("cam-class").value;
    for (const run of prediction.runs.filter(r => !r.detector)) {
      const card = document.querySelector(`#predictions [data-run="${CSS.escape(run.name)}"]`);
      const chosenClass = wanted || run.top[0].class;
      card.querySelector(".cam-caption").textContent = `where it looked for ${chosenClass} (HiResCAM)`;
      card.querySelector("img.cam").src =
        `/api/runs/${encodeURIComponent(run.name)}/gradcam?image=${prediction.image}&class_name=${encodeURIComponent(chosenClass)}`;
    }
  }

  async function drawBoxes(canvas, name, token) {
    try {
      const found = await api(`/api/runs/${encodeURIComponent(name)}/detections?image=${token}&min_score=0.3`);
      const picture = new Image();
      picture.onload = () => {
        canvas.height = Math.round(canvas.width * found.height / found.width);
        const scale = canvas.width / found.width, context = canvas.getContext("2d");
        context.drawImage(picture, 0, 0, canvas.width, canvas.height);
        context.lineWidth = 2;
        context.strokeStyle = context.fillStyle = colour(name);
        context.font = "12px system-ui";
        for (const o of found.objects.filter(o => o.drawn !== false)) {
          const [x1, y1, x2, y2] = o.box.map(v => v * scale);
          context.strokeRect(x1, y1, x2 - x1, y2 - y1);
          context.fillText(`${o.label} ${o.score.toFixed(2)}`, x1 + 2, Math.max(12, y1 - 3));
        }
        const drawn = found.objects.filter(o => o.drawn !== false).length;
        canvas.closest(".run-card").querySelector(".boxes-caption").textContent =
          `a detector, no class map: ${drawn} box${drawn === 1 ? "" : "es"} with a score of at least 0.3`;
        canvas.dataset.boxes = String(drawn);
      };
      picture.src = `/api/uploads/${token}`;
    } catch (err) { showError("image-error", err); }
  }

  document.getElementById("only-differences").addEventListener("change", showSettings);
  document.getElementById("metric").addEventListener("change", drawPerClass);
  document.getElementById("cam-class").addEventListener("change", showMaps);
  onImageChosen(document.getElementById("image-form"), "image-error", predict);
  showPicker();
}
