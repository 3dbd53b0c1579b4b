#!/usr/bin/env bash
# Reproduces docs/results/engine.md: fetches the weights, builds the engine, runs the quality
# grids (next-token loss, passkey retrieval), the KV-cap demo, and renders tables + plots.
#   bash tools/smollm2/run_engine_eval.sh [out-dir (default build/engine)]
# About 60 minutes on 2 cores. SMOLLM2=path/to/smollm2 uses an existing binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-build/engine}"
mkdir -p "$out"
bash scripts/fetch_smollm2.sh
if [ -z "${SMOLLM2:-}" ]; then
  cmake --preset release >/dev/null && cmake --build --preset release -j2 --target smollm2
  SMOLLM2=build/release/examples/smollm2/smollm2
fi
scorers=recency,key_diff,snapkv,window+key_diff
# 1. Loss of a 256-token continuation after a 3072-token prefix, 3 documents: every scorer at
#    chunk 512, online and oracle; then chunk size and the merge reducer for key_diff.
"$SMOLLM2" ppl --budgets 256,512,1024,2048 --chunks 512 --scorers $scorers --reducers evict \
  --modes full,online,oracle > "$out/ppl.csv"
"$SMOLLM2" ppl --budgets 256,512,1024,2048 --chunks 128 --scorers key_diff,snapkv --reducers evict \
  --modes online > "$out/ppl_chunks.csv"
"$SMOLLM2" ppl --budgets 256,512,1024,2048 --chunks 512 --scorers key_diff,snapkv --reducers merge \
  --modes online,oracle > "$out/ppl_merge.csv"
# 2. Passkey in a 2048-token haystack, 5 depths x 2 trials; also the window scorers scored by
#    the question's pre-pass queries (@question) instead of each chunk's last queries.
"$SMOLLM2" passkey --tokens 2048 --budgets 256,512,1024 --chunks 256 --trials 2 \
  --scorers $scorers,window@question,snapkv@question,window+key_diff@question > "$out/passkey.csv"
#    The same prompts with head-adaptive budgets: a layer's kv-heads share budget x 3 by score.
"$SMOLLM2" passkey --tokens 2048 --budgets 256,512,1024 --chunks 256 --trials 2 \
  --scorers key_diff,snapkv,snapkv@question --budget-policy head_adaptive --modes online,oracle \
  > "$out/passkey_heads.csv"
#    And with other floors (each head keeps at least floor x budget; 1 would be uniform).
for floor in 0 0.5; do
  "$SMOLLM2" passkey --tokens 2048 --budgets 256,512,1024 --chunks 256 --trials 2 \
    --scorers key_diff,snapkv,snapkv@question --budget-policy head_adaptive --head-floor $floor --modes online,oracle \
    > "$out/passkey_heads_floor$floor.csv"
done
# 3. The KV-cap demo (the example's default run).
"$SMOLLM2" demo > "$out/demo.txt"
# 4. Prefill speed with and without kvcap, interleaved in one process.
"$SMOLLM2" speed --tokens 3072 --chunk 512 --budget 1024 --reps 3 > "$out/speed.csv"
py=python3; python3 -c "import matplotlib" 2>/dev/null || py=/usr/bin/python3  # apt python3-matplotlib
"$py" tools/smollm2/plot_engine.py --ppl "$out/ppl.csv" "$out/ppl_chunks.csv" "$out/ppl_merge.csv" \
  --passkey "$out/passkey.csv" "$out/passkey_heads.csv" "$out"/passkey_heads_floor*.csv --demo "$out/demo.txt" --speed "$out/speed.csv" --out docs/results
mkdir -p docs/results/engine/raw
cp "$out"/ppl.csv "$out"/ppl_chunks.csv "$out"/ppl_merge.csv "$out"/passkey.csv "$out"/passkey_heads*.csv \
  "$out"/speed.csv "$out"/demo.txt \
  docs/results/engine/raw/
