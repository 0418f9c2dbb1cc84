#!/usr/bin/env bash
# What a user sees in STAC Browser (issue 13 §6: "pictures where people look").
#
# Usage:  benchmarks/stac_browser_check.sh <output-folder>
#
# Builds the real STAC Browser (npm `@radiantearth/stac-browser@4.0.1`, source only; basemap switched off so the
# run is hermetic), starts geofed exactly as `make serve` does (demo simulators, loopback, a fresh data dir),
# serves STAC Browser's `dist/` with `python3 -m http.server`, and has headless Chromium screenshot (PNG) and
# dump (HTML) these pages into <output-folder>:
#   root, collection-carbonmapper-plumes, collection-epoch-plots, and one item of carbonmapper-plumes,
#   carbonmapper-scenes, carbonmapper:l2b-ch4-mfa-v3a (upstream STAC scene), sentinelhub:sentinel-2-l2a,
#   spaceknow-scenes and epoch-plots.
# It then reads the DOM dumps and writes <output-folder>/summary.txt: per collection page the temporal extent
# STAC Browser shows, per item page whether it shows a preview image (and its URL). Exit status 1 when a page
# that must show something does not (plume collection extent; plume, Epoch and upstream-scene previews).
# Sentinel Hub, SpaceKnow and CarbonMapper REST scenes have no preview: their upstreams document none.
#
# Prerequisites: npm + Node >= 18 (registry access on the first run only), `chromium` (Debian package),
#   python3, curl, and the repo's venv (`make install`). Not part of `make test`.
# Run time (2 cores): first run ~3 min (npm install ~1 min, build ~1 min, pages ~1 min); afterwards ~2 min, or
#   ~1 min with a fixed GEOFED_SB_GEOFED_PORT (node_modules and the build are cached under $GEOFED_SB_WORK,
#   default /tmp/geofed-stac-browser; the build bakes in the catalog URL, so a new geofed port rebuilds it).
# Environment: GEOFED_SB_WORK (build cache), GEOFED_SB_GEOFED_PORT / GEOFED_SB_HTTP_PORT (default: free ports).
# Kills only the processes it started (by PID).
set -euo pipefail

OUT=${1:?usage: $0 <output-folder>}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${GEOFED_SB_WORK:-/tmp/geofed-stac-browser}
VERSION=4.0.1
PY="$ROOT/.venv/bin/python"
mkdir -p "$WORK"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
GPORT=${GEOFED_SB_GEOFED_PORT:-$(free_port)}
HPORT=${GEOFED_SB_HTTP_PORT:-$(free_port)}
API="http://127.0.0.1:$GPORT"
CATALOG="$API/stac/"
UI="http://127.0.0.1:$HPORT"

PIDS=()
TMPS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for dir in "${TMPS[@]}"; do rm -rf "$dir"; done
}
trap cleanup EXIT
log() { echo "[stac-browser-check $(date +%T)] $*" >&2; }

# ---------------------------------------------------------------- 1. STAC Browser, built offline-capable
SB="$WORK/package"
if [ ! -f "$SB/.geofed-installed" ]; then
  log "fetching @radiantearth/stac-browser@$VERSION and installing its dependencies"
  rm -rf "$SB"
  (cd "$WORK" && npm pack --silent "@radiantearth/stac-browser@$VERSION" >/dev/null \
     && tar xzf "radiantearth-stac-browser-$VERSION.tgz")
  (cd "$SB" && npm install --no-audit --no-fund --loglevel=error \
     && npm install --no-audit --no-fund --loglevel=error ol-stac@1.1.0)  # the floating version breaks the build
  # no basemap: the map shows footprints and previews only, and never asks a tile server
  sed -i 's/^  return layers;$/  return []; \/\/ geofed check: no basemap (hermetic)/' "$SB/basemaps.config.js"
  grep -q 'return \[\]; // geofed check' "$SB/basemaps.config.js" || { log "cannot switch the basemap off"; exit 2; }
  touch "$SB/.geofed-installed"
fi
if [ "$(cat "$SB/.geofed-built" 2>/dev/null)" != "$CATALOG" ]; then
  log "building STAC Browser for $CATALOG"
  (cd "$SB" && npm run build --silent -- --catalogUrl="$CATALOG" --historyMode=hash >"$WORK/build.log" 2>&1) \
    || { tail -30 "$WORK/build.log"; exit 2; }
  echo "$CATALOG" >"$SB/.geofed-built"
fi

# ---------------------------------------------------------------- 2. geofed as `make serve` starts it, and the UI
DATA=$(mktemp -d /tmp/geofed-sb-data-XXXX)
TMPS+=("$DATA")
log "starting geofed on $API (log: $OUT/geofed.log)"
(cd "$ROOT" && exec env GEOFED_PORT="$GPORT" GEOFED_PUBLIC_URL="$API" GEOFED_DATA_DIR="$DATA" \
   .venv/bin/geofed serve) >"$OUT/geofed.log" 2>&1 &
PIDS+=($!)
python3 -m http.server "$HPORT" --bind 127.0.0.1 --directory "$SB/dist" >"$OUT/http.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 120); do
  curl -sf -o /dev/null "$CATALOG" && break
  sleep 1
done
curl -sf -o /dev/null "$CATALOG" || { log "geofed did not answer $CATALOG"; tail -20 "$OUT/geofed.log"; exit 2; }

first_item() {  # the id of a collection's first item ("" when none)
  curl -s -m 120 "$API/stac/collections/$1/items?limit=1" \
    | "$PY" -c 'import json,sys; f=json.load(sys.stdin).get("features") or [{}]; print(f[0].get("id", ""))'
}

# name → hash route of STAC Browser
PAGES=("root|/" "collection-carbonmapper-plumes|/collections/carbonmapper-plumes"
       "collection-epoch-plots|/collections/epoch-plots")
for spec in "item-plume|carbonmapper-plumes" "item-carbonmapper-scene|carbonmapper-scenes" \
            "item-carbonmapper-stac-scene|carbonmapper:l2b-ch4-mfa-v3a" \
            "item-sentinel-2-l2a|sentinelhub:sentinel-2-l2a" "item-spaceknow-scene|spaceknow-scenes" \
            "item-epoch-plot|epoch-plots"; do
  name=${spec%%|*}; cid=${spec#*|}
  iid=$(first_item "$cid")
  if [ -z "$iid" ]; then log "$cid has no item: $name skipped"; continue; fi
  PAGES+=("$name|/collections/$cid/items/$iid")
done

# ---------------------------------------------------------------- 3. screenshots and DOM dumps
shoot() {  # shoot <name> <route>
  local profile url
  profile=$(mktemp -d /tmp/geofed-sb-chromium-XXXX)
  TMPS+=("$profile")
  url="$UI/#$2"
  echo "$url" >"$OUT/$1.url"
  timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
    --window-size=1400,1000 --virtual-time-budget=15000 --screenshot="$OUT/$1.png" "$url" >/dev/null 2>&1 || true
  timeout 120 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$profile" \
    --window-size=1400,1000 --virtual-time-budget=15000 --dump-dom "$url" >"$OUT/$1.html" 2>/dev/null || true
  log "$1: $url"
}
for page in "${PAGES[@]}"; do shoot "${page%%|*}" "${page#*|}"; done

# ---------------------------------------------------------------- 4. what the pages say
"$PY" - "$OUT" <<'EOF'
import html, pathlib, re, sys

out = pathlib.Path(sys.argv[1])
MUST_EXTENT = {"collection-carbonmapper-plumes"}
MUST_PREVIEW = {"item-plume", "item-epoch-plot", "item-carbonmapper-stac-scene"}
lines, failed = [], []
for page in sorted(out.glob("*.html")):
    name, dom = page.stem, page.read_text(errors="replace")
    body = re.sub(r"<(style|script|noscript)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    text = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))
    if not text.strip():
        lines.append(f"{name}: EMPTY PAGE (Chromium failed?)")
        failed.append(name)
        continue
    if name.startswith("collection-"):
        found = re.search(r"Temporal Extent (.{0,60}?) (?:\+|Map|Provider)", text)
        extent = found.group(1).strip() if found else "(no row)"
        ok = extent not in ("n/a", "(no row)")
        lines.append(f"{name}: temporal extent shown: {extent}")
        if not ok and name in MUST_EXTENT:
            failed.append(name)
    elif name.startswith("item-"):
        images = re.findall(r'<img[^>]*class="[^"]*thumbnail[^"]*"[^>]*>', dom)
        srcs = sorted({s for img in images for s in re.findall(r'src="(http[^"]+)"', img)})
        tab = "Thumbnails" in text
        shown = bool(srcs) or tab
        lines.append(f"{name}: preview {'shown' if shown else 'NONE'}"
                     + (f" (Thumbnails tab; {', '.join(srcs[:2])})" if shown else ""))
        if not shown and name in MUST_PREVIEW:
            failed.append(name)
    else:  # the root catalog: its title and the collection cards on the first page
        cards = len(re.findall(r'class="card catalog-card', body))
        lines.append(f"{name}: {text.strip()[:60]} ... ({cards} collection cards)")
summary = "\n".join(lines + ([f"FAILED: {', '.join(failed)}"] if failed else ["OK"]))
(out / "summary.txt").write_text(summary + "\n")
print(summary)
sys.exit(1 if failed else 0)
EOF
