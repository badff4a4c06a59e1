// The run page: its curves (loss, score, learning rate, optional smoothing), the live progress of an epoch while it
// trains, the film strip with its epoch slider, the network's layers, per-class numbers and the report's pictures.
// A client of /api/runs/NAME, .../metrics, .../progress, .../filmstrip and .../filmstrip/EPOCH (studio/live.py).
"use strict";
const base = `/api/runs/${encodeURIComponent(NAME)}`;
let detector = false, rows = [], running = false;

function smoothing() { return Number(document.getElementById("smoothing").value); }

function drawCurves(metrics) {
  rows = metrics;
  const options = {smoothing: smoothing()};
  lineChart(document.getElementById("loss-chart"), rows, [["train_loss", "#2f6fde", "training"], ["val_loss", "#e07b00", "validation"]], options);
  const score = detector ? [["val_map50", "#157347", "val mAP@0.5"], ["val_map50_95", "#7a3ed6", "val mAP@0.5:0.95"]]
                         : [["train_acc", "#2f6fde", "training"], ["val_acc", "#e07b00", "validation"]];
  lineChart(document.getElementById("score-chart"), rows, score, options);
  // The learning rate is what the schedule set, not a measurement: never smoothed.
  lineChart(document.getElementById("lr-chart"), rows, [["lr", "#157347", "learning rate, end of epoch"]],
            {format: v => fmt(v, 3)});
}

document.getElementById("smoothing").addEventListener("input", () => {
  const value = smoothing();
  document.getElementById("smoothing-value").textContent = value ? value.toFixed(2) : "off";
  drawCurves(rows);
});

async function load() {
  const run = await api(base);
  detector = run.task === "detection";
  running = run.status === "running";
  document.getElementById("score-title").textContent = detector ? "Validation mAP" : "Accuracy";
  document.getElementById("status").replaceChildren(statusBadge(run.status));
  const score = run.score === null ? "not tested yet" : `${run.score_name} ${detector ? fmt(run.score, 3) : percent(run.score)}`;
  document.getElementById("headline").textContent =
    `${run.model} on ${run.data} (${run.classes} classes, input ${run.input}): ${run.epochs} of ${run.planned_epochs} epochs, ${score}`;
  drawCurves(run.metrics);
  document.querySelector("#layers tbody").replaceChildren(...run.layers.map(l => el("tr", {},
    el("td", {}, l.index), el("td", {}, l.name), el("td", {}, l.label), el("td", {}, l.output),
    el("td", {class: "num"}, l.params.toLocaleString()), el("td", {class: "num"}, l.macs.toLocaleString()))));
  document.getElementById("totals").textContent = `${run.params.toLocaleString()} parameters in all`;
  document.getElementById("pictures").replaceChildren(...run.pictures.map(file => el("figure", {class: "card"},
    el("img", {class: "picture", src: `${base}/pictures/${file}?t=${Date.now()}`, alt: file, width: 480}), el("figcaption", {class: "muted"}, file))));
  return run;
}

async function perClass() {
  const table = document.getElementById("per-class"), note = document.getElementById("per-class-note");
  try {
    const result = await api(`${base}/evaluation`);
    note.textContent = result.note || (detector ? "AP@0.5 per class, from results.json" : `accuracy ${percent(result.accuracy)} on the test images`);
    if (!result.per_class.length) return;
    const keys = Object.keys(result.per_class[0]);
    table.tHead.replaceChildren(el("tr", {}, ...keys.map(k => el("th", {class: k === "class" ? "" : "num"}, k))));
    table.tBodies[0].replaceChildren(...result.per_class.map(row => el("tr", {},
      ...keys.map(k => el("td", {class: k === "class" ? "" : "num"}, typeof row[k] === "number" ? fmt(row[k], 3) : row[k])))));
  } catch (err) { note.textContent = ""; showError("run-error", err); }
}

// -- the epoch that runs now ---------------------------------------------------------------------------------------
function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor(s % 3600 / 60)} min`;
}

function showProgress(p) {
  const box = document.getElementById("live-progress");
  box.hidden = !p || p.epoch === undefined;
  if (box.hidden) return;
  const share = p.batches ? p.batch / p.batches : 0;
  document.getElementById("live-bar").style.width = `${(100 * share).toFixed(1)}%`;
  document.getElementById("live-epoch").textContent = `epoch ${p.epoch} of ${p.epochs} · batch ${p.batch} of ${p.batches}`;
  const stage = p.phase === 2 ? `${p.stage}, fine-tuning` : p.stage;
  document.getElementById("live-stage").textContent = stage;
  const parts = [`${fmt(p.images_per_s, 4)} images/s`, `${duration(p.eta_epoch_s)} left in this epoch`,
                 `${duration(p.eta_run_s)} left in all`, `running loss ${fmt(p.train_loss, 4)}`];
  if (p.train_acc !== null && p.train_acc !== undefined) parts.push(`accuracy ${percent(p.train_acc)}`);
  document.getElementById("live-numbers").textContent = parts.join(" · ");
}

async function pollProgress() {
  // Once a second while the run trains (before its first progress.json too); the bar hides when it has finished.
  let p = {};
  try { p = await api(`${base}/progress`); } catch (err) { showError("run-error", err); }
  showProgress(p);
  if (running) setTimeout(pollProgress, 1000);
}

// -- the film strip ------------------------------------------------------------------------------------------------
const strip = {epochs: [], shown: null, cache: new Map()};

async function loadStrip() {
  const answer = await api(`${base}/filmstrip`);
  const note = document.getElementById("filmstrip-note"), body = document.getElementById("filmstrip-body");
  if (!answer.epochs.length) {
    note.textContent = answer.own_convs === false ? "this network has no conv layer of its own (a pretrained base's layers are not saved), so there is no film strip"
                     : answer.running ? "the first snapshot is saved when training starts…"
                     : "this run has no film strip (it was trained before convscope saved them)";
    body.hidden = true;
    return answer;
  }
  const slider = document.getElementById("filmstrip-epoch");
  const atEnd = strip.shown === null || Number(slider.value) === strip.epochs.length - 1;
  strip.epochs = answer.epochs;
  note.textContent = `The first layer's filters and one training image's feature maps (the first ${Math.max(...answer.layers.map(l => l.maps))} of each conv layer), saved after each epoch; epoch 0 is the untrained network. Each map is scaled on its own: bright is its highest value.`;
  document.getElementById("filmstrip-range").textContent = `(${answer.epochs.length} snapshots, epochs ${answer.epochs[0]}–${answer.epochs[answer.epochs.length - 1]})`;
  if (answer.probe) document.getElementById("filmstrip-probe").src = answer.probe;
  document.getElementById("filmstrip-filters-title").textContent =
    `${answer.filters.layer}: ${answer.filters.count} filters ${answer.filters.shape}` + (answer.filters.shape.endsWith("×3") ? " (as colours)" : " (red > 0 > blue)");
  strip.layers = answer.layers;
  slider.max = answer.epochs.length - 1;
  body.hidden = false;
  if (atEnd) slider.value = answer.epochs.length - 1;  // a live run: follow the newest snapshot
  await showEpoch(strip.epochs[Number(slider.value)]);
  return answer;
}

async function showEpoch(epoch) {
  if (epoch === strip.shown && strip.cache.has(epoch)) return;
  if (!strip.cache.has(epoch)) strip.cache.set(epoch, await api(`${base}/filmstrip/${epoch}`));
  if (strip.epochs[Number(document.getElementById("filmstrip-epoch").value)] !== epoch) return;  // moved on meanwhile
  const shot = strip.cache.get(epoch);
  strip.shown = epoch;
  document.getElementById("filmstrip-shown").textContent = epoch === 0 ? "epoch 0 (untrained)" : `epoch ${epoch}`;
  document.getElementById("filmstrip").dataset.epoch = epoch;
  document.getElementById("filmstrip-filters").replaceChildren(...shot.filters.map((png, i) =>
    el("img", {src: png, alt: `filter ${i}`, title: `filter ${i}`})));
  document.getElementById("filmstrip-layers").replaceChildren(...shot.layers.map((layer, j) => el("div", {class: "live-layer"},
    el("h3", {}, `${layer.name} ${strip.layers[j] ? strip.layers[j].shape : ""}: its first ${layer.maps.length} maps`),
    el("div", {class: "live-tiles"}, ...layer.maps.map((m, i) =>
      el("img", {src: m.png, alt: `${layer.name} map ${i}`, title: `${layer.name} map ${i}: ${fmt(m.low, 3)} … ${fmt(m.high, 3)}`}))))));
}

document.getElementById("filmstrip-epoch").addEventListener("input", event => {
  showEpoch(strip.epochs[Number(event.target.value)]).catch(err => showError("run-error", err));
});

async function follow(run) {
  // While it trains: the page (its curves included) and the film strip every 2 seconds; once it has finished (or stopped),
  // its per-class numbers and last snapshot once more.
  if (run.status !== "running") {
    showProgress({});
    await loadStrip();
    await perClass();
    return;
  }
  await loadStrip();  // the curves were drawn by load(), from the run's metrics
  setTimeout(async () => follow(await load()), 2000);
}

async function start() {
  // A training started from the Train page has no run folder for its first seconds: wait for it, saying so.
  for (let tries = 0; ; tries++) {
    try { return await load(); } catch (err) {
      if (!/^no run named/.test(err.message) || tries >= 60) throw err;
      document.getElementById("headline").textContent = "starting: waiting for the training to make its run folder…";
      await new Promise(resolve => setTimeout(resolve, 1000));
    }
  }
}

start().then(run => {
  if (running) { pollProgress(); perClass(); }
  return follow(run);
}).catch(err => showError("run-error", err));
