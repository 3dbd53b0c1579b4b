#!/usr/bin/env python3
"""Plots and tables for docs/results/fidelity.md from the fidelity harness's CSV.

  plot_fidelity.py RESULTS.csv [RESULTS2.csv ...] --out docs/results/fidelity

Writes PNGs into the --out folder and prints markdown tables on stdout. Needs numpy and
matplotlib (Debian: python3-numpy python3-matplotlib).
"""
import argparse
import csv
import collections
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            for r in csv.DictReader(f):
                for k in ("tokens", "layers", "chunk", "budget", "peak_bytes"):
                    r[k] = int(r[k])
                for k in ("budget_frac", "rel_err", "mass_recall", "topk_overlap", "seconds"):
                    r[k] = float(r[k])
                rows.append(r)
    return rows


def select(rows, **kw):
    return [r for r in rows if all(r[k] == v for k, v in kw.items())]


def table(rows, key_cols, metric_cols):
    out = ["| " + " | ".join(key_cols + metric_cols) + " |", "|" + "---|" * (len(key_cols) + len(metric_cols))]
    for r in rows:
        cells = [str(r[k]) for k in key_cols]
        cells += [f"{r[m]:.3f}" if isinstance(r[m], float) else str(r[m]) for m in metric_cols]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--sweep-source", default=None, help="source used for the scorer/budget plots")
    ap.add_argument("--length-prefix", default="len", help="sources named PREFIX<frames> form the peak-vs-length plot")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rows = load(args.csv)
    sources = sorted({r["source"] for r in rows})

    for src in sources:
        base = select(rows, source=src, reducer="evict", chunking="aligned")
        if not base:
            continue
        chunk = collections.Counter(r["chunk"] for r in base).most_common(1)[0][0]
        # 1. recall and error vs budget per scorer, online vs oracle.
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for scorer in sorted({r["scorer"] for r in base}):
            for mode, style in (("online", "-o"), ("oracle", "--x")):
                pts = sorted((r["budget_frac"], r["mass_recall"], r["rel_err"])
                             for r in select(base, scorer=scorer, mode=mode, chunk=chunk))
                if not pts:
                    continue
                label = f"{scorer} ({mode})"
                axes[0].plot([p[0] * 100 for p in pts], [p[1] for p in pts], style, label=label)
                axes[1].plot([p[0] * 100 for p in pts], [p[2] for p in pts], style, label=label)
        axes[0].set(xlabel="budget (% of prompt tokens)", ylabel="attention-mass recall", title=f"{src}: recall")
        axes[1].set(xlabel="budget (% of prompt tokens)", ylabel="relative attention-output error",
                    title=f"{src}: error", yscale="log")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, f"{src}_budget.png"), dpi=110)
        plt.close(fig)

        print(f"\n### {src} ({base[0]['data']}, {base[0]['tokens']} tokens, {base[0]['layers']} layers)\n")
        print(f"Aligned chunks of {chunk}, evict. Online = compress after every chunk; oracle = post-prefill.\n")
        t = sorted(select(base, chunk=chunk), key=lambda r: (r["budget"], r["scorer"], r["mode"]))
        print(table(t, ["scorer", "mode", "budget"], ["mass_recall", "topk_overlap", "rel_err", "peak_bytes"]))

        # 2. aligned vs fixed (misaligned) chunks, online.
        cmp = [r for r in rows if r["source"] == src and r["reducer"] == "evict" and r["mode"] == "online"]
        if {r["chunking"] for r in cmp} >= {"aligned", "fixed"}:
            print(f"\nAligned vs fixed-size chunks, online, evict ({src}):\n")
            t = sorted(cmp, key=lambda r: (r["scorer"], r["budget"], r["chunking"], r["chunk"]))
            print(table(t, ["scorer", "budget", "chunking", "chunk"], ["mass_recall", "rel_err"]))
        # 3. evict vs merge.
        mg = [r for r in rows if r["source"] == src and r["chunking"] == "aligned" and r["chunk"] == chunk]
        if {r["reducer"] for r in mg} >= {"evict", "merge"}:
            print(f"\nEvict vs merge, aligned chunks of {chunk} ({src}):\n")
            t = sorted(mg, key=lambda r: (r["scorer"], r["mode"], r["budget"], r["reducer"]))
            print(table(t, ["scorer", "mode", "budget", "reducer"], ["mass_recall", "rel_err"]))

    # 4. peak vs prompt length: full cache (oracle rows hold the whole prompt) vs online.
    length_rows = [r for r in rows if r["source"].startswith(args.length_prefix)]
    if length_rows:
        fig, ax = plt.subplots(figsize=(6, 4))
        for mode, label in (("online", "kvcap (online, fixed budget)"), ("oracle", "full cache (then compressed)")):
            pts = sorted({(r["tokens"], r["peak_bytes"]) for r in length_rows if r["mode"] == mode})
            ax.plot([p[0] for p in pts], [p[1] / 2**20 for p in pts], "-o", label=label)
        ax.set(xlabel="prompt tokens", ylabel="peak KV bytes (MiB, measured)", title="peak vs video length")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "peak_vs_length.png"), dpi=110)
        plt.close(fig)
        print("\n### Peak KV bytes vs prompt length (measured with a counting memory resource)\n")
        t = sorted(length_rows, key=lambda r: (r["mode"], r["tokens"]))
        seen, uniq = set(), []
        for r in t:
            if (r["mode"], r["tokens"]) not in seen:
                seen.add((r["mode"], r["tokens"]))
                uniq.append(r)
        print(table(uniq, ["source", "tokens", "mode", "budget"], ["peak_bytes"]))


if __name__ == "__main__":
    main()
