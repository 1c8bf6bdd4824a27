"""The live view's page: one self-contained HTML document (no file is served from disk), with
``{{MODEL}}``, ``{{SOURCE}}``, ``{{ENGINE}}`` (HTML-escaped), ``{{STATE}}`` (JSON made safe for a
script) and ``{{TEACH}}`` (the Teach panel, with ``--teach-dir``) filled in by :mod:`.serve` for each
request."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>edge-classify: {{MODEL}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#111;color:#eee;display:flex;flex-wrap:wrap;gap:16px;padding:16px}
#view{flex:1 1 480px;max-width:960px;display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:8px}
.tile{cursor:pointer;border:2px solid transparent;border-radius:8px} .tile.on{border-color:#4a9}
.tile img{width:100%;background:#222;border-radius:6px;display:block} .tile div{font-size:.9rem;padding:2px 4px}
#side{flex:0 1 320px} h1{font-size:1.1rem;margin:0 0 8px} .muted{color:#999;font-size:.85rem}
#answer{font-size:2rem;font-weight:600;margin:8px 0} #answer.unknown{color:#f6a}
.bar{display:flex;align-items:center;gap:8px;margin:4px 0} .bar span{width:110px;overflow:hidden;text-overflow:ellipsis}
.bar div{height:12px;background:#4a9;border-radius:3px} table{font-size:.85rem;border-collapse:collapse}
td{padding:2px 8px 2px 0}
</style></head><body>
<div id="view"></div>
<div id="side"><h1 id="model">{{MODEL}}</h1><div class="muted">source: {{SOURCE}}</div>
<div class="muted" id="engine">engine: {{ENGINE}}</div>
<div id="answer">waiting for frames</div><div id="unknown" class="muted"></div><div id="bars"></div>
<table id="stats"></table><div id="changes" class="muted"></div></div>
<script>
const esc = (t) => String(t).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
const token = new URLSearchParams(location.search).get("token");
const q = token ? "?token=" + encodeURIComponent(token) : "";
const initial = {{STATE}};
const cameras = initial.cameras.map((c) => c.camera || c.source);
let selected = cameras[0];
document.getElementById("view").innerHTML = cameras.map((name, i) => `<div class="tile${i ? "" : " on"}" `
    + `data-camera="${esc(name)}"><img alt="${esc(name)}"><div><b>${esc(name)}</b>: `
    + `<span>waiting</span></div></div>`).join("");
document.querySelectorAll(".tile").forEach((tile) => {
  const img = tile.querySelector("img");
  img.src = "stream.mjpg?camera=" + encodeURIComponent(tile.dataset.camera)
      + (token ? "&token=" + encodeURIComponent(token) : "");
  img.addEventListener("load", () => { document.body.dataset.streamLoaded = img.naturalWidth; });
  tile.addEventListener("click", () => {
    selected = tile.dataset.camera;
    document.querySelectorAll(".tile").forEach((t) => t.classList.toggle("on", t === tile));
  });
});
function update(all) {
  for (const c of all.cameras) {
    const tile = [...document.querySelectorAll(".tile")].find((t) => t.dataset.camera === (c.camera || c.source));
    if (tile && c.frame != null) tile.querySelector("span").textContent = c.unknown ? "none of these" : c.label;
    if ((c.camera || c.source) === selected && c.frame != null) show(c);
  }
}
function show(s) {
  const answer = document.getElementById("answer");
  answer.textContent = s.unknown ? "none of these" : s.label;  // textContent: never parsed as HTML
  answer.className = s.unknown ? "unknown" : "";
  document.body.dataset.label = s.label;
  document.getElementById("unknown").textContent = s.unknown_score == null ? "" :
      "out-of-class score " + s.unknown_score.toFixed(3) + (s.unknown ? " (none of these)" : "");
  document.getElementById("bars").innerHTML = s.top.map(([name, p]) => `<div class="bar"><span>${esc(name)}</span>`
      + `<div style="width:${Math.round(180 * p)}px"></div>${(100 * p).toFixed(1)}%</div>`).join("");
  document.getElementById("model").textContent = s.model + (s.model_sha256 ? " (" + s.model_sha256 + ")" : "");
  const rows = [["camera", esc(s.camera || s.source)], ["frame", s.frame], ["look", esc(s.look || "first")],
      ["FPS", s.fps == null ? "-" : s.fps.toFixed(1)]]
      .concat(Object.entries(s.ms || {}).map(([k, v]) => [k + " ms", v.toFixed(2)]));
  document.getElementById("stats").innerHTML = rows.map(([k, v]) => `<tr><td>${k}</td><td>${v}</td></tr>`).join("");
}
update(initial);
const events = new EventSource("events" + q);
events.addEventListener("state", (message) => update(JSON.parse(message.data)));
events.addEventListener("label", (message) => {
  const e = JSON.parse(message.data);
  document.getElementById("changes").textContent =
      "last change: " + (e.camera ? e.camera + ": " : "") + (e.previous || "-") + " -> " + e.label + " at " + e.time;
});
</script>{{TEACH}}</body></html>
"""

# The Teach panel: capture from the selected camera, see the examples, teach; errors shown in words.
# It calls the JSON API (edge_runtime.teach_api) with the token in a header, never in a URL.
TEACH_PANEL = """<div id="teach" style="flex:1 1 100%;border-top:1px solid #333;padding-top:8px">
<h1>Teach</h1><div class="muted">capture frames of a thing from the selected camera, for each class, then teach</div>
<p><input id="t-class" placeholder="class name" maxlength="60"> <input id="t-count" type="number" value="10" min="1"
max="50" style="width:4em"> frames over <input id="t-seconds" type="number" value="3" min="0" max="60" step="0.5"
style="width:4em"> s <button id="t-capture">capture</button> <button id="t-teach">teach</button></p>
<div id="t-status" class="muted"></div><div id="t-error" style="color:#f6a"></div><div id="t-model" class="muted"></div>
<div id="t-examples"></div></div>
<script>
async function api(action, body) {
  const response = await fetch("api/teach/" + action, {method: "POST", body: JSON.stringify(body || {}),
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + (token || "")}});
  const answer = await response.json();
  document.getElementById("t-error").textContent = response.ok ? "" : answer.error;
  document.body.dataset.teachError = response.ok ? "" : answer.error;
  return response.ok ? answer : null;
}
function showStatus(s) {
  if (!s) return;
  document.getElementById("t-model").textContent = "model: " + s.model + " (" + s.labels.join(", ") + ")";
  document.body.dataset.labels = s.labels.join(",");
  const busy = s.capturing ? "capturing " + s.capturing.name + " " + s.capturing.taken + "/" + s.capturing.shots
      : s.teaching ? "teaching..."
      : s.taught ? "taught " + s.taught.labels.join(", ") + " in " + s.taught.seconds + " s" : "";
  document.getElementById("t-status").textContent = busy;
  if (s.error) document.getElementById("t-error").textContent = s.error;
}
function showExamples(list) {
  if (!list) return;
  document.getElementById("t-examples").innerHTML = list.classes.map((c) => `<div><b>${esc(c.class)}</b>`
      + ` <span class="count" data-class="${esc(c.class)}">${c.count}</span> examples<br>` + c.thumbnails.map((t) =>
      `<img src="${t.jpeg}" title="${esc(t.file)}" style="height:48px;margin:2px"><button class="del"`
      + ` data-class="${esc(c.class)}" data-file="${esc(t.file)}">x</button>`).join("") + "</div>").join("");
  document.querySelectorAll("#t-examples .del").forEach((b) => b.addEventListener("click", async () =>
      showExamples(await api("delete", {"class": b.dataset.class, "file": b.dataset.file}))));
}
document.getElementById("t-capture").addEventListener("click", async () => showStatus(await api("capture", {
  "class": document.getElementById("t-class").value, "camera": selected,
  "count": Number(document.getElementById("t-count").value),
  "seconds": Number(document.getElementById("t-seconds").value)})));
document.getElementById("t-teach").addEventListener("click", async () => showStatus(await api("teach")));
events.addEventListener("teach", async (message) => {
  const e = JSON.parse(message.data);
  document.body.dataset.teachState = e.state;
  if (e.state === "error") document.getElementById("t-error").textContent = e.error;
  if (e.state === "saved" || e.state === "taught") showExamples(await api("examples"));
  showStatus(await api("status"));
});
events.addEventListener("model", async () => showStatus(await api("status")));  // a new model swapped in
api("status").then(showStatus);
api("examples").then(showExamples);
</script>"""
