#!/usr/bin/env bash
# tools/host/host_mutations.sh — do the host tests catch a broken policy? Applies one known bug
# at a time to a scratch copy of include/ (a tie broken the wrong way, an off-by-one in a
# window, a merge weighted backwards, a block table ignored, a check one too lenient...), builds
# the host test files (tests/test_*.cpp) against it, and runs them until one fails.
#
# The host executor is the oracle the device is compared with (tests/device), and the device
# runs the same policy headers: a bug in a shared header (ranking, a scorer, the merge, a
# structure) changes both sides alike, and no parity test can see it. Only the host's own
# tests, hand-checked kept sets and invariants, can. That is what this measures, so the device
# tests are not run here.
#
# Prints one line per mutation: "caught" with the first test file that failed and how many of
# its cases did, or "NOT CAUGHT" when every host test file still passes. A mutation that does
# not compile says so (a static_assert in the header is a check too, but a different one).
#
#   bash tools/host/host_mutations.sh            # every mutation, about 20 minutes on 2 cores
#   KVCAP_MUTATIONS='merge|ranking' bash tools/host/host_mutations.sh   # only those matching
#   bash tools/host/host_mutations.sh --targets  # only: is every mutation's text still in the
#                                                # source? (a ctest, so the list cannot rot)
#
# Needs g++, Eigen and doctest (Debian's libeigen3-dev and doctest-dev).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(-std=c++20 -O1 -w -pthread -I"$root/tools" -isystem /usr/include/eigen3
       -DKVCAP_FIXTURE_DIR="\"$root/tests/fixtures\"")

# name | file under include/kvcap | text to replace (first occurrence) | replacement [| test files to try first]
mutations=(
  # ---- the one order of tokens (core/ranking.hpp) ----
  "ranking: protected tokens rank last|core/ranking.hpp|return a.is_protected;|return b.is_protected;"
  "ranking: the lower score ranks first|core/ranking.hpp|return a.score > b.score;|return a.score < b.score;"
  "ranking: ties keep the larger logical index|core/ranking.hpp|return a.index < b.index;|return a.index > b.index;"
  "ranking: a NaN score ranks as +inf|core/ranking.hpp|isnan(s) ? -HUGE_VALF : s|isnan(s) ? HUGE_VALF : s"
  # ---- select, compact, repack (host/select_compact.hpp) ----
  "select: one token fewer than the budget|host/select_compact.hpp|for (index_t i = 0; i < keep; ++i) keep_flags|for (index_t i = 1; i < keep; ++i) keep_flags"
  "compact: V rows stay where they were|host/select_compact.hpp|      std::memcpy(view.v + view.mapping(dst, head), view.v + view.mapping(tok, head), d * sizeof(T));|"
  "compact: metadata stays where it was|host/select_compact.hpp|      view.meta_at(dst, head) = view.meta_at(tok, head);|"
  "repack: heads moving back go in ascending order (overwrite a later head)|host/select_compact.hpp|  for (index_t head = heads - 1; head >= 0; --head)
    if (new_begin[head] > head_indptr[head]) move(head);|  for (index_t head = 0; head < heads; ++head)
    if (new_begin[head] > head_indptr[head]) move(head);|test_head_adaptive"
  "repack: no room left for the next chunk after each head|host/select_compact.hpp|at += head_len[head] + max_chunk;|at += head_len[head];|test_head_adaptive"
  # ---- head-adaptive selection (host/compressor.hpp) ----
  "head_adaptive: no per-head floor|host/compressor.hpp|const index_t floor = policies_.budget.head_floor(tokens);|const index_t floor = 0;|test_head_adaptive"
  "head_adaptive: compress_to's floor from the construction budget, not its target|host/compressor.hpp|floor = policies_.budget.head_floor(tokens);|floor = policies_.budget.head_floor(policies_.budget.tokens);|test_head_adaptive"
  "head_adaptive: a tie across heads goes to the later head|host/compressor.hpp|(!ranks_before(rb, ra) && a < b)|(!ranks_before(rb, ra) && a > b)|test_head_adaptive"
  "compress: every layer compressed to layer 0's budget|host/compressor.hpp|compress_to(layer, budget(layer), window, window_is_chunk_tail);|compress_to(layer, budget(0), window, window_is_chunk_tail);|test_merge_and_budgets"
  "compress_to: as many tokens as are protected is refused|host/compressor.hpp|tokens >= l.num_protected && tokens <= l.budget|tokens > l.num_protected && tokens <= l.budget|test_errors"
  # ---- scorers ----
  "recency: one sink too many|scorers/recency.hpp|index < num_sinks ?|index <= num_sinks ?|test_scorers"
  "forced_keep: the recent window one token short|scorers/forced_keep.hpp|index >= ctx.next_index() - num_recent|index > ctx.next_index() - num_recent|test_scorers"
  "key_diff: keeps keys close to the mean direction|scorers/key_diff.hpp|return -cosine(|return cosine(|test_scorers"
  "key_diff anchor: a zero key counts (0/0)|core/segment_sums.hpp|return norm > 0.f;|return norm >= 0.f;|test_scorers"
  "temporal: looks back one frame whatever max_lookback|scorers/temporal_redundancy.hpp|back <= max_lookback|back <= 1|test_structure_scorers"
  "temporal: no reference scores -1 (redundant), not 0|scorers/temporal_redundancy.hpp|    return 0.f;|    return -1.f;|test_structure_scorers"
  "spatial: divides by 4 neighbours, not by those it has|scorers/spatial_redundancy.hpp|-sum / static_cast<float>(found)|-sum / 4.f|test_structure_scorers"
  "pooled_value_norm: the window one column short|scorers/pooled_value_norm.hpp|dw <= radius|dw < radius|test_structure_scorers"
  "blend: weight_a on both components|scorers/blend.hpp|weight_a * z[0] + weight_b * z[1]|weight_a * z[0] + weight_a * z[1]|test_scorers"
  "blend: variance over n - 1 in the mean's formula|core/segment_sums.hpp|sum_sq / static_cast<double>(n) - m * m|sum_sq / static_cast<double>(n - 1) - m * m|test_scorers"
  # ---- the observation window (host/window_mass.hpp, core/window_rows.hpp) ----
  "window: queries not scaled by 1/sqrt(dim)|host/window_mass.hpp|const float scale = 1.f / std::sqrt(static_cast<float>(d));|const float scale = 1.f;|test_window_scorer"
  "window: GQA members interleaved across kv-heads|host/window_mass.hpp|window(j, head * group + g)|window(j, head + g * view.mapping.num_heads)|test_window_scorer"
  "window: the host's mask hides a causal query's own key|host/window_mass.hpp|std::max<index_t>(0, visible_end(r) - t0)|std::max<index_t>(0, visible_end(r) - 1 - t0)|test_window_scorer"
  "window: rows that see no key count in the average|host/window_mass.hpp|1.f / static_cast<float>(window_seeing_rows(n, w, group, causal))|1.f / static_cast<float>(rows)|test_window_scorer"
  "window: a causal query does not see its own key (the shared rule)|core/window_rows.hpp|return causal ? n - window_tokens + row / group + 1 : n;|return causal ? n - window_tokens + row / group : n;|test_window_scorer"
  # ---- the merge reducer (reducers/merge.hpp) ----
  "merge: the weights swapped|reducers/merge.hpp|(wt * k_into[u] + wd * k_from[u]) * inv|(wd * k_into[u] + wt * k_from[u]) * inv|test_merge_and_budgets"
  "merge: the size grows by one, not by the dropped token's size|reducers/merge.hpp|into.size += ctx.meta(tok).size;|into.size += 1;|test_merge_and_budgets"
  "merge: a cosine tie goes to the larger slot|reducers/merge.hpp|return a.slot < b.slot ? a : b;|return a.slot > b.slot ? a : b;|test_merge_and_budgets"
  "merge: the lowest cosine wins|reducers/merge.hpp|return a.cosine > b.cosine ? a : b;|return a.cosine < b.cosine ? a : b;|test_merge_and_budgets"
  "merge: the kept slot after is not a candidate|reducers/merge.hpp|    if (near.after < ctx.num_tokens()) out[count++] = near.after;|"
  "merge: no temporal neighbours|reducers/merge.hpp|steps[6] = {{-1, 0, 0}, {1, 0, 0},|steps[6] = {{0, 0, 0}, {0, 0, 0},|test_merge_and_budgets"
  "merge: a NaN cosine is not ranked as -inf|reducers/merge.hpp|{sanitize_score(cosine(keys[0], keys[1 + i])), cand[i]}|{cosine(keys[0], keys[1 + i]), cand[i]}|test_merge_and_budgets"
  # ---- budgets ----
  "uniform_layers: the remainder goes to the last layers|budgets/layer_schedules.hpp|return base + (layer < extra ? 1 : 0);|return base + (layer >= s.num_layers - extra ? 1 : 0);|test_merge_and_budgets"
  "pyramid_layers: the profile's sum is off|budgets/layer_schedules.hpp|(1.0 - r) * n * (n - 1.0)|(1.0 - r) * n * n|test_merge_and_budgets"
  "fixed_bytes: rounds the token count up|budgets/fixed_bytes.hpp|bytes_per_layer / per_token|(bytes_per_layer + per_token - 1) / per_token|test_merge_and_budgets"
  # ---- structures and chunk plans ----
  "grid: tile-major offset uses tile_rows as the row pitch|structures/grid_geometry.hpp|(row % tile_rows) * tile_cols + col % tile_cols|(row % tile_rows) * tile_rows + col % tile_cols|test_structures"
  "grid: a row boundary at the grid's width inside a tile|structures/grid_geometry.hpp|if (in_frame % (tiled() ? tile_cols : cols) == 0)|if (in_frame % cols == 0)|test_structures"
  "grid: a neighbour one column past the edge|structures/grid_geometry.hpp|w >= cols) return false;|w > cols) return false;|test_structures"
  "mixed: a visual segment advances positions by its tokens (not M-RoPE's span)|structures/mixed.hpp|at.position += s.position_span();|at.position += s.num_tokens();|test_structures"
  "mixed: protected segments are not protected|structures/mixed.hpp|m.is_protected = s.is_protected;|m.is_protected = false;|test_structures"
  "mixed: a segment start is only a frame boundary|structures/mixed.hpp|if (tok == at.begin) return boundary::segment;|if (tok == at.begin) return boundary::frame;|test_structures"
  "chunks: the nearest strongest boundary, not the furthest|structures/chunk_planner.hpp|if (b > best_rank)|if (b >= best_rank)|test_structures"
  "chunks: the lower half's first place is not tried|structures/chunk_planner.hpp|e >= floor; --e|e > floor; --e|test_structures"
  "chunks: the hybrid bulk pass is the budget even below max_chunk|structures/chunk_planner.hpp|return {max_chunk, std::max(budget, max_chunk)};|return {max_chunk, budget};|test_structures"
  # ---- layouts ----
  "paged_hnd: rows laid out as NHD inside a page|layouts/paged.hpp|: (head * page_size + row) * head_dim;|: (row * num_heads + head) * head_dim;|test_layouts"
  "paged: the block table is ignored|layouts/paged.hpp|block_table != nullptr ? static_cast<index_t>(block_table[logical]) : logical|logical|test_layouts"
  "varlen: unpacked metadata at the packed slot|layouts/varlen.hpp|return packed_meta ? head_begin(head) + tok : head * capacity + tok;|return head_begin(head) + tok;|test_layouts"
  # ---- the checks that leave the cache unchanged (host/validation.hpp) ----
  "check: a repeated logical index is accepted|host/validation.hpp|require(m.index > prev_index|require(m.index >= prev_index|test_errors"
  "check: a chunk one token past the room is accepted|host/validation.hpp|require(n <= at.room,|require(n <= at.room + 1,|test_errors"
  "check: one protected token more than the budget is accepted|host/validation.hpp|require(protected_after <= at.budget,|require(protected_after <= at.budget + 1,|test_errors"
  "check: an appended token may carry a merged size|host/validation.hpp|require(m.size == 1,|require(m.size >= 1,|test_errors"
  "check: a block-table entry equal to the pool size is accepted|host/validation.hpp|m.block_table[page] < pool|m.block_table[page] <= pool|test_errors"
  "check: tiles need not divide the grid|host/validation.hpp|require(g.tile_rows > 0 && g.rows % g.tile_rows == 0|require(g.tile_rows > 0|test_errors"
)
source "$root/tools/mutations/select.sh"
select_mutations "${mutations[@]}"

if [ "${1:-}" = --targets ]; then
  missing=0
  for m in "${selected[@]}"; do
    IFS='|' read -r -d '' name file old new first < <(printf '%s\0' "$m") || true
    rm -rf "$work/include" && mkdir -p "$work/include/kvcap/$(dirname "$file")"
    cp "$root/include/kvcap/$file" "$work/include/kvcap/$file"
    python3 "$root/tools/mutations/apply_mutation.py" "$work/include/kvcap/$file" "$old" "$new" || missing=$((missing + 1))
  done
  echo "${#selected[@]} mutations, $missing whose text is no longer in the source"
  exit $((missing > 0))
fi

all_tests=()
for source in "$root"/tests/test_*.cpp; do all_tests+=("$(basename "$source" .cpp)"); done

echo "kvcap host mutations: ${#selected[@]} against ${#all_tests[@]} host test files, $(g++ --version | head -1), $(lscpu | sed -n "s/^Model name: *//p") ($(nproc) cores), $(date -u +%Y-%m-%d), commit $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- include tests || echo " (with local changes)")"
g++ "${flags[@]}" -I"$root/include" -c "$root/tests/doctest_main.cpp" -o "$work/main.o"

# Builds test file $1 against the include/ at $2 and runs it; prints "rc failed total".
run_test() {
  local name=$1 include=$2
  if ! g++ "${flags[@]}" -I"$include" "$root/tests/$name.cpp" "$work/main.o" -o "$work/$name" 2> "$work/build.log"; then
    echo "build"
    return
  fi
  local rc=0
  timeout 300 "$work/$name" > "$work/out.log" 2>&1 || rc=$?
  local line
  line=$(grep -E '^\[doctest\] test cases:' "$work/out.log" | head -1 || true)
  if [ -z "$line" ]; then echo "$rc - -"; return; fi  # no summary: it crashed or timed out
  echo "$rc $(sed -E 's/.*\| *([0-9]+) failed.*/\1/' <<< "$line") $(sed -E 's/.*cases: *([0-9]+).*/\1/' <<< "$line")"
}

# The unmutated sources must pass, or no verdict below means anything.
for name in "${all_tests[@]}"; do
  read -r rc _ _ < <(run_test "$name" "$root/include")
  if [ "$rc" != 0 ]; then echo "baseline: $name fails unmutated (rc $rc); fix that first"; exit 1; fi
done
echo "baseline: all ${#all_tests[@]} host test files pass unmutated"

caught=0 missed=0 unbuilt=0
for m in "${selected[@]}"; do
  IFS='|' read -r -d '' name file old new first < <(printf '%s\0' "$m") || true
  first=${first%$'\n'}
  copy="$work/include"
  rm -rf "$copy" && cp -r "$root/include" "$copy"
  python3 "$root/tools/mutations/apply_mutation.py" "$copy/kvcap/$file" "$old" "$new"
  order=()
  for name_first in $first; do order+=("$name_first"); done
  for t in "${all_tests[@]}"; do [[ " $first " == *" $t "* ]] || order+=("$t"); done
  verdict=""
  for t in "${order[@]}"; do
    read -r rc failed total < <(run_test "$t" "$copy")
    if [ "$rc" = build ]; then
      verdict="unbuilt     $name: ($t) $(grep -m1 -E 'error' "$work/build.log" | sed -E 's/^[^ ]*: //' | cut -c1-120)"
      unbuilt=$((unbuilt + 1))
      break
    fi
    if [ "$rc" != 0 ]; then
      if [ "$rc" = 124 ]; then what="timed out"
      elif [ "$failed" = - ]; then what="rc $rc, no doctest summary: it crashed$( ((rc > 128)) && echo " (signal $((rc - 128)))")"
      else what="$failed of $total cases failed"; fi
      verdict="caught      $name: $t ($what)"
      caught=$((caught + 1))
      break
    fi
  done
  if [ -z "$verdict" ]; then
    verdict="NOT CAUGHT  $name: all ${#all_tests[@]} host test files pass"
    missed=$((missed + 1))
  fi
  echo "$verdict"
done
echo "caught $caught, not caught $missed, did not compile $unbuilt, of ${#selected[@]}"
