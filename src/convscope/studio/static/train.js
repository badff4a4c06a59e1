// The Train page: the spec editor checked by the shape linter as it is typed (POST /api/lint), the command and recipe
// of what would start (POST /api/jobs/preview), the start itself (POST /api/jobs) and the trainings started here.
"use strict";

const LINE = 20, PAD = 8;  // px: the editor's line height and top padding (train.html's style)
const form = document.getElementById("train-form");
const spec = document.getElementById("spec");
let edited = false;  // the spec differs from the preset that filled it: it is sent; otherwise the preset trains
let presetLoading = Promise.resolve();
let lintAsked = 0, previewAsked = 0, lintTimer = null, previewTimer = null;

function later(timer, fn, ms) { clearTimeout(timer); return setTimeout(fn, ms); }

function fitEditor() {
  // The textarea as tall as its text (and its sideways scroll bar, when a long line has one), the gutter numbering its
  // lines: never a vertical scroll, so the gutter and the band stay on their lines.
  const lines = spec.value.split("\n").length, height = lines * LINE + 2 * PAD;
  spec.style.height = `${height}px`;
  const bar = spec.offsetHeight - spec.clientHeight;  // the horizontal scroll bar's height (0 when none)
  if (bar > 0) spec.style.height = `${height + bar}px`;
  document.getElementById("gutter").textContent = Array.from({length: lines}, (_, i) => i + 1).join("\n");
}

function loadPreset() {
  const name = document.getElementById("model").value;
  presetLoading = api(`/api/presets/${encodeURIComponent(name)}`).then(answer => {
    spec.value = answer.yaml;
    edited = false;
    fitEditor();
    lint();
    preview();
  }).catch(err => showError("train-error", err));
  return presetLoading;
}

function showProblem(error) {
  // The problem in a box under its line (or under the text when it has no line), the line banded.
  const box = document.getElementById("spec-error"), band = document.getElementById("bad-line");
  const editor = document.getElementById("editor");
  editor.style.paddingBottom = "0px";
  if (!error) {
    box.style.display = band.style.display = "none";
    box.removeAttribute("data-line");
    return;
  }
  const lines = spec.value.split("\n").length, line = error.line || lines;
  band.style.display = error.line ? "block" : "none";
  band.style.top = `${PAD + (line - 1) * LINE}px`;
  box.style.display = "block";
  box.style.top = `${PAD + line * LINE + 1}px`;
  box.dataset.line = error.line || "";
  box.textContent = error.line ? `line ${error.line}: ${error.message}` : error.message;
  // A problem on the last lines: the editor grows under the text so that the box is not cut off by its edge.
  const over = box.offsetTop + box.offsetHeight + 4 - editor.clientHeight;
  if (over > 0) editor.style.paddingBottom = `${over}px`;
}

function showSummary(answer) {
  const summary = document.getElementById("summary");
  if (!answer.ok) {
    summary.replaceChildren(el("p", {class: "muted"}, "The summary appears when the spec can run."));
    return;
  }
  const shown = ["#", "layer", "what", "output H×W×C", "params"];
  const at = shown.map(header => answer.columns.indexOf(header));
  const numeric = new Set(["#", "output H×W×C", "params"]);
  const rows = answer.rows.map((row, i) => el("tr", answer.lines[i] ? {"data-line": answer.lines[i], title: `line ${answer.lines[i]}`} : {},
    ...at.map((j, k) => el("td", numeric.has(shown[k]) ? {class: "num"} : {}, row[j]))));
  for (const row of rows) {
    row.addEventListener("mouseenter", () => row.classList.add("at"));
    row.addEventListener("mouseleave", () => row.classList.remove("at"));
  }
  summary.replaceChildren(
    el("b", {}, answer.name),
    el("table", {id: "summary-table"},
      el("thead", {}, el("tr", {}, ...shown.map(h => el("th", numeric.has(h) ? {class: "num"} : {}, h)))),
      el("tbody", {}, ...rows)),
    ...answer.totals.map(line => el("div", {class: "muted"}, line)));
}

async function lint() {
  const asked = ++lintAsked;
  try {
    const answer = await api("/api/lint", {method: "POST", headers: {"content-type": "application/json"},
                                           body: JSON.stringify({spec: spec.value})});
    if (asked !== lintAsked) return;  // the text changed since: a newer answer is on its way
    showProblem(answer.ok ? null : answer.errors[0]);
    showSummary(answer);
  } catch (err) {
    if (asked === lintAsked) showProblem({line: null, message: String(err.message || err)});
  }
}

function formData() {
  // The form's fields less the empty ones (the recipe's or TrainConfig's value then), the spec only when edited.
  const data = new FormData(form);
  for (const [key, value] of [...data.entries()]) {
    if (String(value).trim() === "" || (key === "device" && value === "auto")) data.delete(key);
  }
  if (!edited) data.delete("spec");
  return data;
}

async function preview() {
  const asked = ++previewAsked;
  const command = document.getElementById("command"), recipe = document.getElementById("recipe");
  try {
    const answer = await api("/api/jobs/preview", {method: "POST", body: formData()});
    if (asked !== previewAsked) return;
    document.getElementById("preview").classList.remove("stale");
    command.replaceChildren(el("code", {}, answer.command));
    document.getElementById("named").textContent = answer.named;
    recipe.className = "muted";
    recipe.replaceChildren(...[answer.recipe, `settings: ${answer.settings}`].filter(Boolean).map(t => el("div", {}, t)));
  } catch (err) {
    if (asked !== previewAsked) return;
    document.getElementById("preview").classList.remove("stale");
    command.replaceChildren(el("code", {}, "—"));
    document.getElementById("named").textContent = "";
    recipe.className = "error";
    recipe.textContent = String(err.message || err);
  }
}

async function refresh() {
  try {
    const jobs = await api("/api/jobs");
    document.querySelector("#jobs tbody").replaceChildren(...jobs.map(job => el("tr", {"data-job": job.name},
      el("td", {}, el("a", {href: `/runs/${encodeURIComponent(job.name)}`}, job.name)),
      el("td", {}, statusBadge(job.state), job.message ? el("div", {class: "muted"}, job.message) : ""),
      el("td", {}, el("code", {}, job.command), el("div", {class: "muted"}, "to continue it: ", el("code", {}, job.resume))),
      el("td", {}, job.state === "running" ? el("button", {class: "secondary", type: "button", onclick: () => stop(job.name)}, "Stop") : ""))));
    if (jobs.some(job => job.state === "running")) setTimeout(refresh, 1000);
  } catch (err) { showError("train-error", err); }
}

async function stop(name) {
  try { await api(`/api/jobs/${encodeURIComponent(name)}/stop`, {method: "POST"}); } catch (err) { showError("train-error", err); }
  setTimeout(refresh, 300);
}

spec.addEventListener("input", () => {
  edited = true;
  fitEditor();
  lintTimer = later(lintTimer, lint, 250);
});
spec.addEventListener("keydown", e => {  // Tab indents (two spaces, as YAML wants) instead of leaving the editor
  if (e.key !== "Tab") return;
  e.preventDefault();
  spec.setRangeText("  ", spec.selectionStart, spec.selectionEnd, "end");
  spec.dispatchEvent(new Event("input"));
});
document.getElementById("model").addEventListener("change", loadPreset);
form.addEventListener("input", e => {
  if (e.target.id === "model") return;
  document.getElementById("preview").classList.add("stale");  // never a command that no longer holds, shown as one
  previewTimer = later(previewTimer, preview, 400);
});
form.addEventListener("submit", async e => {
  e.preventDefault();
  showError("train-error", null);
  await presetLoading;  // a preset chosen a moment ago: its spec, not the one before it
  try { await api("/api/jobs", {method: "POST", body: formData()}); } catch (err) { showError("train-error", err); }
  refresh();
  preview();  // the next run's name
});
loadPreset();
refresh();
