// The Doctor page: start a diagnosis (POST /api/doctor), follow its progress, then show its counts and findings
// (from the JSON) and its report (report.html, in a sandboxed frame). See studio/doctor.py.
"use strict";

let following = null;  // the diagnosis the page shows

async function loadRuns() {
  try {
    const runs = await api("/api/runs");
    document.getElementById("run").append(...runs.map(run => el("option", {value: run.name}, `${run.name} (${run.task})`)));
  } catch (err) { showError("doctor-error", err); }
}

function found(doc) {
  if (!doc) return "";
  const problems = doc.findings.filter(f => f.serious).length, warnings = doc.findings.length - problems;
  return doc.findings.length ? `${problems} problem(s), ${warnings} warning(s)` : "nothing found";
}

function prose(text) {
  // Advice as the report shows it: each `...` (a command) as <code>, built as elements (no HTML strings).
  // The same pattern as report_tiles.prose, so the page and the report agree on odd backticks.
  const out = [], all = String(text);
  let last = 0;
  for (const match of all.matchAll(/`([^`]+)`/g)) {
    out.push(all.slice(last, match.index), el("code", {}, match[1]));
    last = match.index + match[0].length;
  }
  return [...out, all.slice(last)];
}

function clear() {
  // A new diagnosis starts: nothing of the one shown before stays on screen (its result, its error, its progress).
  following = "";  // not null: refresh() must not follow the previous diagnosis again
  showError("doctor-error", null);
  document.getElementById("result").hidden = true;
  document.getElementById("progress").hidden = true;
  document.getElementById("report").src = "about:blank";
}

async function refresh() {
  try {
    const all = await api("/api/doctor");
    document.querySelector("#diagnoses tbody").replaceChildren(...all.map(job => el("tr", {"data-diagnosis": job.id},
      el("td", {}, el("a", {href: "#", onclick: e => { e.preventDefault(); follow(job.id); }}, job.data)),
      el("td", {}, statusBadge(job.state), job.message ? el("div", {class: "muted"}, job.message) : ""),
      el("td", {}, found(job.diagnosis)),
      el("td", {class: "num"}, job.seconds === null ? "–" : job.seconds.toFixed(1)))));
    if (following === null && all.length) follow(all[0].id);
  } catch (err) { showError("doctor-error", err); }
}

async function follow(id) {
  following = id;
  let job;
  try { job = await api(`/api/doctor/${encodeURIComponent(id)}`); } catch (err) { showError("doctor-error", err); return; }
  if (following !== id) return;
  const running = job.state === "running";
  document.getElementById("progress").hidden = !running;
  if (running) {
    document.getElementById("stage").textContent = `${job.data}: ${job.stage}`;
    document.getElementById("counted").textContent = job.total ? `${job.done.toLocaleString()} of ${job.total.toLocaleString()} images` : "";
    document.getElementById("bar").style.width = job.total ? `${(100 * job.done / job.total).toFixed(1)}%` : "0%";
    document.getElementById("result").hidden = true;
    setTimeout(() => { if (following === id) follow(id); }, 500);
    return;
  }
  refresh();
  showError("doctor-error", null);
  if (job.state === "failed") {
    document.getElementById("result").hidden = true;
    showError("doctor-error", job.message || "the diagnosis failed");
    return;
  }
  show(job);
}

function show(job) {
  const doc = job.diagnosis;
  const badges = [[doc.findings.filter(f => f.serious).length, "problem"], [doc.findings.filter(f => !f.serious).length, "warning"]]
    .filter(([n]) => n).map(([n, kind]) => el("span", {class: `level ${kind}`}, `${n} ${kind}(s)`));
  document.getElementById("verdict").replaceChildren(...(badges.length ? badges : [el("span", {class: "level clean"}, "nothing found")]),
    ` ${job.data}`);
  document.getElementById("facts").textContent =
    `${doc.layout} · ${doc.task} · ${doc.classes.length} classes · ${doc.seconds.toFixed(1)} s` + (doc.run ? ` · run ${doc.run}` : "");
  const head = el("tr", {}, el("th", {}, "class"), ...doc.splits.map(s => el("th", {class: "num"}, s.name)));
  const rows = doc.classes.map(name => el("tr", {}, el("td", {}, name),
    ...doc.splits.map(s => el("td", {class: "num"}, (s.per_class[name] || 0).toLocaleString()))));
  const totals = el("tr", {}, el("td", {}, "readable / listed"),
    ...doc.splits.map(s => el("td", {class: "num"}, `${s.readable.toLocaleString()} / ${s.files.toLocaleString()}`)));
  document.getElementById("counts").replaceChildren(head, ...rows, totals);
  const frame = document.getElementById("report");
  document.getElementById("findings").replaceChildren(...(doc.findings.length ? doc.findings.map((f, i) => el("li", {"data-kind": f.kind},
    el("span", {class: `level ${f.serious ? "problem" : "warning"}`}, f.serious ? "problem" : "warning"),
    // The finding's own section of the report (its id is finding-N, in the same order), opened in the frame
    el("a", {href: `${job.report}#finding-${i}`, target: "report", onclick: () => frame.scrollIntoView()}, f.title),
    el("div", {class: "advice"}, ...prose(f.advice || "")))) : [el("li", {class: "muted"}, "nothing found")]));
  document.getElementById("report-link").href = job.report;
  document.getElementById("report-folder").textContent = job.folder;
  if (!frame.src.includes(job.report)) frame.src = job.report;  // kept when only its #finding-N differs
  document.getElementById("result").hidden = false;
}

document.getElementById("doctor-form").addEventListener("submit", async e => {
  e.preventDefault();
  clear();
  try {
    const job = await api("/api/doctor", {method: "POST", body: new FormData(e.target)});
    follow(job.id);
  } catch (err) { showError("doctor-error", err); }
  refresh();
});
loadRuns();
refresh();
