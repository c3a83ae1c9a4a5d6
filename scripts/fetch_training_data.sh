#!/usr/bin/env bash
# Builds the training data of the shipped weights under data/ (never committed):
#   data/photos/    photographs from Debian's wallpaper packages, halved in size (sharper per pixel, less JPEG noise)
#   data/photos_lomiri/  14 more photographs (lomiri-wallpapers-16.04), treated the same; a folder of their own so
#                   the recipes of the shipped weights (which saw data/photos only) still read the same data
#   data/frames/    frames of ../shared/data/video clips; data/frames/holdout/ keeps the last 20 % of each clip
# T91 is read in place from ../shared/data/train/T91. Benchmarks (Set5/Set14) are never used for training.
# Looked through and left out (sixth sitting): ukui-wallpapers (12 vector/abstract pictures), sway-backgrounds (the
# logo in 8 sizes), lomiri-wallpapers(-20.04) (the Kleiber photograph already used, the rest illustrations), the Plasma
# and MATE abstract sets and gnome-backgrounds: none holds a photograph not listed below.
# Seventh sitting: stellarium-data (its landscapes are thin horizon strips, sky cut out, at most 2048 px wide) and
# gcompris-qt-data (no picture files, only packed resources): none either.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared/data}
PY=${PY:-.venv/bin/python}

# Debian's packages holding the photographs listed below (Kleiber_by_Lukas_Baubkus is in lomiri-wallpapers-20.04).
PACKAGES=(plasma-workspace-wallpapers gnome-backgrounds mate-backgrounds lomiri-wallpapers-16.04 lomiri-wallpapers-20.04)
if ! dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    $SUDO apt-get install -y -q "${PACKAGES[@]}"
fi

mkdir -p data/photos data/photos_lomiri
$PY - <<'PYEOF'
# Photographs only: the packages also hold illustrations and patterns, which teach a model the wrong textures.
from pathlib import Path
from PIL import Image

PLASMA_PHOTOS = ["BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
                 "Kite", "MilkyWay", "OneStandsOut", "Path", "summer_1am", "Volna"]
MATE_PHOTOS = ["Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
               "TwoWings", "Wood", "YellowFlower"]
# Skipped there: Infinite-Sea (a composite), analogpattern (a texture) and the package's illustrations.
LOMIRI_PHOTOS = ["Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Kleiber_by_Lukas_Baubkus",
                 "Picture_0B_by_freespace", "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede",
                 "aitzgorri_by_Aitzol_Berasategi", "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi",
                 "greentock_by_Peter_Nerlich", "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
                 "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi"]

def largest(folder: Path) -> Path:
    return max(folder.iterdir(), key=lambda p: int(p.stem.split("x")[0]) * int(p.stem.split("x")[1]))

def halve_into(sources: list[Path], out: Path, name) -> None:
    for src in sources:
        target = out / f"{name(src)}.png"
        if target.exists():
            continue
        img = Image.open(src).convert("RGB")
        img = img.resize((img.width // 2, img.height // 2), Image.BICUBIC, reducing_gap=None)
        img.save(target)
        print(f"{src} -> {target} {img.size}")
    print(f"{len(sources)} photographs in {out}")


sources = [largest(Path("/usr/share/wallpapers") / n / "contents/images") for n in PLASMA_PHOTOS]
sources += [Path("/usr/share/backgrounds/mate/nature") / f"{n}.jpg" for n in MATE_PHOTOS]
halve_into(sources, Path("data/photos"), lambda src: src.parts[4] if "wallpapers" in src.parts else src.stem)
halve_into([Path("/usr/share/backgrounds") / f"{n}.jpg" for n in LOMIRI_PHOTOS], Path("data/photos_lomiri"),
           lambda src: src.stem)
PYEOF

[ -d data/frames/train ] || .venv/bin/vsr prepare "$SHARED/video" data/frames --every 4 --holdout 0.2
