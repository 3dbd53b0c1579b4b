#!/usr/bin/env bash
# Reproduces docs/results/fidelity.md's data: builds the example and the harness, writes the
# semi-real K/V dumps (real pixels from Debian's opencv-doc, untrained projections), a real
# one when tools/fidelity/smollm2_dump.py can run (SmolLM2-135M from PyPI), runs the sweep and
# draws the plots.   Usage: bash tools/fidelity/run_fidelity.sh [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build/release}
data=/usr/share/doc/opencv-doc/examples/data
work=$build/fidelity
out=$root/docs/results/fidelity
mkdir -p "$work/dumps" "$out"

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target video_prefill fidelity
vp=$build/examples/video_prefill
fid=$build/tools/fidelity

dump() {  # name, then video_prefill arguments
  local name=$1; shift
  [ -f "$work/dumps/$name/manifest.txt" ] || "$vp" "$@" --dump "$work/dumps/$name" --dump-only >/dev/null
}
# Real videos, semi-real K/V: 4 layers, 2 kv-heads × 64.
dump vtest16 "$data/vtest.avi" --frames 16 --stride 50
dump megamind16 "$data/Megamind.avi" --frames 16 --stride 16
dump tree32 "$data/tree.avi" --frames 32 --stride 2
# Four high-resolution photographs tiled 2×2 into one 1344×1344 image (48×48 tokens).
if [ ! -f "$work/tiled.png" ]; then
  ffmpeg -v error -y -i "$data/baboon.jpg" -i "$data/fruits.jpg" -i "$data/building.jpg" -i "$data/starry_night.jpg" \
    -filter_complex "[0]scale=672:672[a];[1]scale=672:672[b];[2]scale=672:672[c];[3]scale=672:672[d];[a][b][c][d]xstack=inputs=4:layout=0_0|w0_0|0_h0|w0_h0" \
    -frames:v 1 "$work/tiled.png"
fi
dump tiled4 "$work/tiled.png" --frames 1 --stride 1
# Peak vs length: the same street video at half resolution, 4 to 64 frames.
for f in 4 8 16 32 64; do dump "len$f" "$data/vtest.avi" --frames $f --stride 12 --scale 0.5; done

csv=$work/fidelity.csv
label() { echo "--label $work/dumps/$1=$2"; }
args=()
for d in vtest16 megamind16 tree32 tiled4; do args+=(--dump "$work/dumps/$d" $(label $d semi-real)); done
"$fid" "${args[@]}" --budgets 0.05,0.1,0.25 --chunks aligned:784 \
  --scorers recency,key_norm,value_norm,key_diff,temporal,spatial,van,window,key_diff+temporal,window+temporal \
  --modes online,oracle --reducers evict --out "$work/scorers.csv"
"$fid" --dump "$work/dumps/vtest16" $(label vtest16 semi-real) --budgets 0.1 \
  --chunks aligned:784,aligned:256,fixed:256,fixed:784,fixed:1024 \
  --scorers key_diff,temporal,window --modes online --reducers evict,merge --out "$work/chunks.csv"
args=()
for f in 4 8 16 32 64; do args+=(--dump "$work/dumps/len$f" $(label len$f semi-real)); done
"$fid" "${args[@]}" --budget-tokens 256 --chunks aligned:784 --scorers key_diff --modes online,oracle \
  --out "$work/length.csv"
csvs=("$work/scorers.csv" "$work/chunks.csv" "$work/length.csv")
python_with() {  # the first Python that imports all of "$@"
  for py in python3 /usr/bin/python3; do
    "$py" -c "import $(IFS=,; echo "$*")" 2>/dev/null && { echo "$py"; return; }
  done
}

# Real K/V (SmolLM2-135M on real text), when Python with numpy and gguf is at hand.
py=$(python_with numpy gguf)
if [ -n "$py" ] && [ -f "$root/tools/fidelity/smollm2_dump.py" ]; then
  # (re)written when absent or older than its pre-pass probes (window@question scores by them)
  grep -qs '^prepass_probes' "$work/dumps/smollm2/manifest.txt" ||
    "$py" "$root/tools/fidelity/smollm2_dump.py" --out "$work/dumps/smollm2"
  "$fid" --dump "$work/dumps/smollm2" $(label smollm2 real) --budgets 0.05,0.1,0.25 --chunks fixed:256,fixed:784 \
    --scorers recency,key_norm,value_norm,key_diff,window,window@question --modes online,oracle --reducers evict,merge \
    --out "$work/real.csv"
  # The same mean budget shared out by score across a layer's heads, or over the layers.
  "$fid" --dump "$work/dumps/smollm2" $(label smollm2 real) --budgets 0.05,0.1,0.25 --chunks fixed:256 \
    --scorers key_diff,window,window@question --budget-policies head_adaptive,pyramid --head-floor 0.2 \
    --pyramid-ratio 0.5 --modes online,oracle --reducers evict --out "$work/policies.csv"
  csvs+=("$work/real.csv" "$work/policies.csv")
fi
"$(python_with matplotlib)" "$root/tools/fidelity/plot_fidelity.py" "${csvs[@]}" --out "$out" > "$out/tables.md"
echo "wrote $out/tables.md and plots; machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) ($(nproc) cores)"
