"""index.html: one page, no network (styles and script inline, images beside it), with a wipe slider between any two
outputs chosen from two lists, zoom on click, the grid, the side-by-side video and a table of the models."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass


@dataclass
class PageModel:
    """One row of the table and one entry of the lists."""

    label: str
    image: str  # the still's path relative to the page
    arch: str
    generative: str
    per_frame: float
    whole_input: str  # already formatted ("2 h 05 min")
    precision: str
    sha256: str


_STYLE = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 16px; background: #1e1e1e; color: #ddd; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 24px 0 8px; }
.controls { display: flex; flex-wrap: wrap; gap: 16px; align-items: center; margin: 10px 0; }
select, input { font: inherit; }
#slider { width: 320px; }
#viewport { position: relative; display: inline-block; max-width: 100%; overflow: auto; max-height: 78vh;
            border: 1px solid #555; background: #000; vertical-align: top; }
#stage { position: relative; cursor: zoom-in; line-height: 0; }
#stage.zoomed { cursor: zoom-out; }
#stage img { position: absolute; top: 0; left: 0; width: 100%; height: 100%; user-select: none; }
#stage.zoomed img { image-rendering: pixelated; }
#divider { position: absolute; top: 0; bottom: 0; width: 2px; margin-left: -1px; background: #fff;
           pointer-events: none; }
.name { position: absolute; top: 6px; padding: 2px 8px; background: rgba(0,0,0,.75); color: #fff;
        line-height: 1.4; pointer-events: none; z-index: 2; }
#nameL { left: 6px; } #nameR { right: 6px; }
table { border-collapse: collapse; } td, th { border: 1px solid #555; padding: 4px 10px; text-align: left; }
td.num { text-align: right; } .yes { color: #ffb347; } .unknown { color: #aaa; }
img.grid { max-width: 100%; } video { max-width: 100%; } code { font-size: 13px; }
"""

_SCRIPT = """
const models = JSON.parse(document.getElementById('models').textContent);
const left = document.getElementById('left'), right = document.getElementById('right');
const slider = document.getElementById('slider'), stage = document.getElementById('stage');
const viewport = document.getElementById('viewport'), room = document.getElementById('room');
const imgL = document.getElementById('imgL'), imgR = document.getElementById('imgR');
const divider = document.getElementById('divider');
for (const sel of [left, right]) {
  for (const m of models) { const o = document.createElement('option'); o.value = m.label; o.textContent = m.label;
                            sel.appendChild(o); }
}
left.value = models[0].label; right.value = models[Math.min(1, models.length - 1)].label;
let zoomed = false;
const natural = () => [models[0].width, models[0].height];
function layout() {
  const [w, h] = natural();
  // Fit: the largest size that fits the page (whole-pixel enlargement for small frames); zoomed: 2x the frame.
  const fit = Math.min(room.clientWidth - 2, (0.78 * window.innerHeight - 2) * w / h);
  const fitted = fit >= w ? w * Math.floor(fit / w) : fit;
  const width = zoomed ? Math.max(2 * w, 2 * fitted) : fitted;
  stage.style.width = width + 'px'; stage.style.height = Math.round(width * h / w) + 'px';
}
function show() {
  const byLabel = Object.fromEntries(models.map(m => [m.label, m]));
  imgL.src = byLabel[left.value].image; imgR.src = byLabel[right.value].image;
  document.getElementById('nameL').textContent = '\\u25c0 ' + left.value;
  document.getElementById('nameR').textContent = right.value + ' \\u25b6';
  wipe();
}
function wipe() {
  const p = slider.value / 10;
  imgR.style.clipPath = 'inset(0 0 0 ' + p + '%)'; divider.style.left = p + '%';
}
stage.addEventListener('click', e => {
  const box = stage.getBoundingClientRect();
  const fx = (e.clientX - box.left) / box.width, fy = (e.clientY - box.top) / box.height;
  zoomed = !zoomed; stage.classList.toggle('zoomed', zoomed); layout();
  viewport.scrollLeft = fx * stage.offsetWidth - viewport.clientWidth / 2;
  viewport.scrollTop = fy * stage.offsetHeight - viewport.clientHeight / 2;
});
left.addEventListener('change', show); right.addEventListener('change', show);
slider.addEventListener('input', wipe); window.addEventListener('resize', layout);
layout(); show();
"""


def write_page(path, title: str, subtitle: str, models: list[PageModel], size: tuple[int, int], machine: str,
               grid: str, side_video: str, side_note: str) -> None:
    """Writes the page (as given: the caller writes to a temporary name and renames).

    Args:
        path: the file.
        title: the heading (the input's name).
        subtitle: the excerpt and the scale.
        models: the outputs, bicubic first.
        size: the outputs' (width, height).
        machine: what the times were measured on.
        grid: the grid image's path relative to the page.
        side_video: the side-by-side video's path relative to the page.
        side_note: which two models it shows.
    """
    data = [{"label": m.label, "image": m.image, "width": size[0], "height": size[1]} for m in models]
    rows = "\n".join(
        f"<tr><td>{html.escape(m.label)}</td><td>{html.escape(m.arch)}</td>"
        f"<td class=\"{html.escape(m.generative)}\">{html.escape(m.generative)}</td>"
        f"<td class=num>{_seconds(m.per_frame)}</td><td class=num>{html.escape(m.whole_input)}</td>"
        f"<td>{html.escape(m.precision)}</td><td><code>{html.escape(m.sha256[:16])}</code></td></tr>"
        for m in models)
    esc = html.escape
    data_json = json.dumps(data).replace("</", "<\\/")  # nothing in a label can end the script element
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>vsr compare: {esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>
<body>
<h1>{esc(title)}</h1><div>{esc(subtitle)}</div>
<div class="controls">
  <label>left <select id="left"></select></label>
  <input id="slider" type="range" min="0" max="1000" value="500" aria-label="wipe position">
  <label>right <select id="right"></select></label>
  <span>click the picture to zoom in 2&times; at that point (pixels shown as squares), click again to fit</span>
</div>
<div id="room"><div id="viewport"><span class="name" id="nameL"></span><span class="name" id="nameR"></span>
<div id="stage"><img id="imgL" alt="left output"><img id="imgR" alt="right output"><div id="divider"></div></div>
</div></div>
<h2>Models</h2>
<table id="models-table"><thead><tr><th>model</th><th>architecture</th><th>generative</th>
<th>time per frame</th><th>whole input (estimate)</th><th>precision</th><th>weights SHA-256</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<p>Times measured on {esc(machine)}, on this excerpt: from the end of the run's plan to the finished file (the
encoder's final flush included), per frame; the whole-input estimate adds the plan once. On a machine shared with
other work they vary with its load. Generative models (trained with an adversarial loss) may draw detail that is not in
the source.</p>
<h2>Crops</h2><img class="grid" src="{esc(grid)}" alt="every model's frame and crops">
<h2>Side by side</h2><div>{esc(side_note)}</div>
<video src="{esc(side_video)}" controls loop muted></video>
<script type="application/json" id="models">{data_json}</script>
<script>{_SCRIPT}</script>
</body></html>
"""
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)


def _seconds(value: float) -> str:
    return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"
