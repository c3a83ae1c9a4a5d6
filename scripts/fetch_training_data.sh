#!/usr/bin/env bash
# Builds the training data of the shipped weights under data/ (never committed):
#   data/photos/    photographs from Debian's wallpaper packages, halved in size (sharper per pixel, less JPEG noise)
#   data/frames/    frames of ../shared/data/video clips; data/frames/holdout/ keeps the last 20 % of each clip
# T91 is read in place from ../shared/data/train/T91. Benchmarks (Set5/Set14) are never used for training.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared/data}
PY=${PY:-.venv/bin/python}

if [ ! -d /usr/share/wallpapers ] || [ ! -d /usr/share/backgrounds/mate ]; then
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    $SUDO apt-get install -y -q plasma-workspace-wallpapers gnome-backgrounds mate-backgrounds
fi

mkdir -p data/photos
$PY - <<'PYEOF'
# Photographs only: the packages also hold illustrations and patterns, which teach a model the wrong textures.
from pathlib import Path
from PIL import Image

PLASMA_PHOTOS = ["BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
                 "Kite", "MilkyWay", "OneStandsOut", "Path", "summer_1am", "Volna"]
MATE_PHOTOS = ["Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
               "TwoWings", "Wood", "YellowFlower"]

def largest(folder: Path) -> Path:
    return max(folder.iterdir(), key=lambda p: int(p.stem.split("x")[0]) * int(p.stem.split("x")[1]))

sources = [largest(Path("/usr/share/wallpapers") / n / "contents/images") for n in PLASMA_PHOTOS]
sources += [Path("/usr/share/backgrounds/mate/nature") / f"{n}.jpg" for n in MATE_PHOTOS]
out = Path("data/photos")
for src in sources:
    target = out / f"{src.parts[4] if 'wallpapers' in src.parts else src.stem}.png"
    if target.exists():
        continue
    img = Image.open(src).convert("RGB")
    img = img.resize((img.width // 2, img.height // 2), Image.BICUBIC, reducing_gap=None)
    img.save(target)
    print(f"{src} -> {target} {img.size}")
print(f"{len(sources)} photographs in {out}")
PYEOF

.venv/bin/vsr prepare "$SHARED/video" data/frames --every 4 --holdout 0.2
