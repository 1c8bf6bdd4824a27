"""The live view's page: one self-contained HTML document (no file is served from disk), with
``{{MODEL}}``, ``{{SOURCE}}``, ``{{ENGINE}}`` (HTML-escaped) and ``{{STATE}}`` (JSON made safe for a
script) filled in by :mod:`.serve` for each request."""

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
</script></body></html>
"""
