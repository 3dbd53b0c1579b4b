#!/usr/bin/env python3
"""tools/device/summarize_bench.py — the tables of a device run, read from what it printed.

    python3 tools/device/summarize_bench.py RUN_DIR

RUN_DIR is what `tools/device/device_checks.sh run` wrote (docs/results/device/<run>/): its
bench.json (bench_device_compress, Google Benchmark's JSON) and its device.txt (nvidia-smi and
the commit the binaries were built from). Prints, as Markdown, the figures docs/results/device.md
quotes, each the median of the run's repetitions:

  - the compaction against cudaMemcpy device-to-device of the same bytes (the issue's target:
    ≥ 0.8), and against the same run's other yardsticks: a plain copy kernel, the compaction's
    own moves copied out of place (rows_copy_*) and in place in no order (rows_in_place_*);
  - where a compaction tile's time goes (the probe's tl_* phases);
  - score, select, merge and compact of one layer against an attention of the chunk (the
    issue's target: select + compact ≤ 10 %);
  - the merge's rounds against its slot-order walk.

A counter that the run's binaries did not report (an older commit) prints as "–". Nothing is
computed here that the benchmark did not print, except the medians.
"""

import json
import statistics
import sys
from pathlib import Path


def medians(bench):
    """{benchmark name without /manual_time: {counter: median}} over the repetitions, plus the label."""
    runs = {}
    for b in bench["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        name = b["run_name"].removesuffix("/manual_time").removesuffix("/iterations:10")
        runs.setdefault(name, []).append(b)
    out = {}
    for name, reps in runs.items():
        keys = {k for r in reps for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        out[name] = {k: statistics.median(r[k] for r in reps if k in r) for k in keys}
        out[name]["label"] = reps[0].get("label", "")
        out[name]["repetitions"] = len(reps)
    return out


def cell(row, key, fmt):
    return fmt.format(row[key]) if key in row else "–"


def table(title, columns, rows):
    """columns: (heading, key, format); rows: [(name, counters)]."""
    if not rows:
        return
    print(f"\n### {title}\n")
    print("| case | " + " | ".join(c[0] for c in columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for name, row in rows:
        print(f"| {name} | " + " | ".join(cell(row, key, fmt) for _, key, fmt in columns) + " |")


def device_line(run_dir):
    """The GPU's name line (nvidia-smi's CSV query) and the build commit, from device.txt."""
    path = run_dir / "device.txt"
    if not path.exists():
        return "device.txt: missing", "unknown"
    lines = path.read_text(errors="replace").splitlines()
    gpu = next((lines[i + 1] for i, l in enumerate(lines) if l.startswith("name, driver_version") and i + 1 < len(lines)),
               "no nvidia-smi query in device.txt")
    commit = next((l.split(":", 1)[1].strip() for l in lines if l.startswith("build commit:")), "unknown")
    return gpu, commit


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("\n\n")[1])
    run_dir = Path(sys.argv[1])
    bench = json.loads((run_dir / "bench.json").read_text())
    rows = medians(bench)
    gpu, commit = device_line(run_dir)
    print(f"**{run_dir.name}**: {gpu}; binaries built from {commit}; bench run {bench['context']['date']}; "
          f"medians of {max((r['repetitions'] for r in rows.values()), default=0)} repetitions.")

    def named(prefix):
        return [(name, row) for name, row in rows.items() if name.startswith(prefix)]

    compaction = named("compact_")
    table("Compaction against cudaMemcpy D2D of the same bytes (target ≥ 0.80)", [
        ("tile", "tile_tokens", "{:.0f}"),
        ("copy batch", "copy_batch", "{:.0f}"),
        ("moved MB", "moved_MB", "{:.1f}"),
        ("compact GB/s", "compact_GBps", "{:,.0f}"),
        ("memcpy GB/s", "memcpy_GBps", "{:,.0f}"),
        ("**compact / memcpy**", "compact_over_memcpy", "**{:.2f}**"),
    ], compaction)
    yardsticks = ("copy_kernel_over_memcpy", "rows_copy_over_memcpy", "rows_in_place_over_memcpy")
    table("The same run's other yardsticks, against the same memcpy", [
        ("compact", "compact_over_memcpy", "{:.2f}"),
        ("plain copy kernel", "copy_kernel_over_memcpy", "{:.2f}"),
        ("rows copy", "rows_copy_over_memcpy", "{:.2f}"),
        ("rows copy, K and V", "rows_copy_kv_over_memcpy", "{:.2f}"),
        ("rows in place, no order", "rows_in_place_over_memcpy", "{:.2f}"),
        ("compact / rows copy", "compact_over_rows_copy", "{:.2f}"),
        ("rows copy checked", "rows_copy_checked", "{:.0f}"),
    ], [(n, r) for n, r in compaction if any(k in r for k in yardsticks)])
    table("Where a compaction tile's time goes (µs a tile, thread 0's clock; the probed launch)", [
        ("take", "tl_take_us", "{:.2f}"),
        ("plan", "tl_plan_us", "{:.2f}"),
        ("stage", "tl_stage_us", "{:.2f}"),
        ("wait", "tl_wait_us", "{:.2f}"),
        ("write", "tl_write_us", "{:.2f}"),
        ("tile", "tl_tile_us", "{:.2f}"),
        ("span µs", "tl_span_us", "{:.1f}"),
        ("last block entered µs", "tl_last_entered_us", "{:.1f}"),
        ("tiles an SM holds", "tl_tiles_per_sm", "{:.2f}"),
        ("busiest SM / mean", "tl_busiest_sm_over_mean", "{:.2f}"),
    ], [(n, r) for n, r in compaction if "tl_tile_us" in r])
    table("One layer, batch 8, against an attention of the chunk (target: select + compact ≤ 10 %)", [
        ("score µs", "score_us", "{:,.1f}"),
        ("select µs", "select_us", "{:,.1f}"),
        ("merge µs", "merge_us", "{:,.0f}"),
        ("compact µs", "compact_us", "{:,.1f}"),
        ("attention µs", "attention_us", "{:,.0f}"),
        ("attention TFLOP/s", "attention_TFLOPs", "{:.1f}"),
        ("**(select + compact) / attention**", "select_compact_over_attention", "**{:.2%}**"),
        ("/ attention at 400 TFLOP/s", "select_compact_over_400TFLOPs_attention", "{:.1%}"),
        ("all stages / attention at 400 TFLOP/s", "compress_over_400TFLOPs_attention", "{:.1%}"),
        ("NaN/Inf check of the chunk µs", "check_us", "{:,.1f}"),
        ("failure log µs", "log_us", "{:,.1f}"),
        ("heads' competition µs (in select)", "share_us", "{:,.1f}"),
    ], named("compress_vs_attention/"))
    merge = named("merge_rounds_vs_walk/")
    variants = sorted({k for _, r in merge for k in r if k.endswith("_us")},
                      key=lambda k: (k != "walk_us", k))
    table("The merge: rounds against the slot-order walk (µs)",
          [(v.removesuffix("_us"), v, "{:,.0f}") for v in variants] +
          [("walk / rounds", "walk_over_rounds", "{:.2f}"), ("best / library", "best_rounds_over_library", "{:.2f}")],
          merge)
    for name, row in merge:
        if row["label"]:
            print(f"\n{name}: {row['label']}")


if __name__ == "__main__":
    main()
