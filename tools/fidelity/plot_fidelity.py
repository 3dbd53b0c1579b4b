#!/usr/bin/env python3
"""Plots and tables for docs/results/fidelity.md from the fidelity harness's CSV files.

  plot_fidelity.py RESULTS.csv [RESULTS2.csv ...] --out docs/results/fidelity > tables.md

Writes PNGs into --out and markdown tables on stdout. Needs matplotlib.
"""
import argparse
import collections
import csv
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
                # Share of the oracle's kept tokens also kept online; absent in older CSVs and
                # empty when the sweep had no oracle.
                r["oracle_overlap"] = float(r["oracle_overlap"]) if r.get("oracle_overlap") else None
                # How the budget is shared out over layers and heads; absent in older CSVs.
                r["budget_policy"] = r.get("budget_policy") or "uniform"
                rows.append(r)
    return rows


def only_compared(rows, group, variant):
    """The rows whose group has more than one variant (so a comparison table has no holes)."""
    variants = collections.defaultdict(set)
    for r in rows:
        variants[group(r)].add(variant(r))
    return [r for r in rows if len(variants[group(r)]) > 1]


class budget_pct(int):
    """A budget in percent that sorts as a number and prints as '5%'."""

    def __str__(self):
        return f"{int(self)}%"


def pivot(rows, row_key, col_key, value, fmt="{:.3f}"):
    """Markdown table: one row per row_key value, one column per col_key value."""
    cols = sorted({col_key(r) for r in rows})
    cells = collections.defaultdict(dict)
    for r in rows:
        cells[row_key(r)][col_key(r)] = value(r)
    label = lambda c: " ".join(map(str, c)) if isinstance(c, tuple) else str(c)  # noqa: E731
    out = ["| | " + " | ".join(label(c) for c in cols) + " |", "|---|" + "---|" * len(cols)]
    for k in sorted(cells):
        out.append(f"| {label(k)} | " + " | ".join(fmt.format(cells[k][c]) if c in cells[k] else "" for c in cols) + " |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--length-prefix", default="len", help="sources named PREFIX<frames> form the peak-vs-length plot")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rows = load(args.csv)
    sources = sorted({r["source"] for r in rows if not r["source"].startswith(args.length_prefix)})
    pct = lambda r: budget_pct(round(r["budget_frac"] * 100))  # noqa: E731

    for src in sources:
        every_policy = [r for r in rows if r["source"] == src]
        mine = [r for r in every_policy if r["reducer"] == "evict" and r["budget_policy"] == "uniform"]
        chunking = "aligned" if any(r["chunking"] == "aligned" for r in mine) else "fixed"
        chunk = collections.Counter(r["chunk"] for r in mine if r["chunking"] == chunking).most_common(1)[0][0]
        base = [r for r in mine if r["chunking"] == chunking and r["chunk"] == chunk]
        if not base:
            continue
        b0 = base[0]
        print(f"\n### {src}: {b0['data']}, {b0['tokens']} tokens, {b0['layers']} layers, "
              f"{b0['kv_heads']} kv-heads x {b0['head_dim']}\n")
        print(f"{chunking.capitalize()} chunks of {chunk}, evict. Attention-mass recall of the probes "
              "(share of the full cache's attention that falls on kept tokens), online per chunk / offline oracle:\n")
        print(pivot(base, lambda r: r["scorer"], lambda r: (pct(r), r["mode"]), lambda r: r["mass_recall"]))
        print("\nRelative attention-output error (lower is better):\n")
        print(pivot(base, lambda r: r["scorer"], lambda r: (pct(r), r["mode"]), lambda r: r["rel_err"]))
        overlap = [r for r in base if r["mode"] == "online" and r["oracle_overlap"] is not None]
        if overlap:
            print("\nKept-set overlap of the online run with the oracle (share of the oracle's kept "
                  "(layer, head, token) that online kept too):\n")
            print(pivot(overlap, lambda r: r["scorer"], pct, lambda r: r["oracle_overlap"]))

        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
        for scorer in sorted({r["scorer"] for r in base}):
            for mode, style in (("online", "-o"), ("oracle", "--x")):
                pts = sorted((r["budget_frac"], r["mass_recall"], r["rel_err"])
                             for r in base if r["scorer"] == scorer and r["mode"] == mode)
                if pts:
                    axes[0].plot([p[0] * 100 for p in pts], [p[1] for p in pts], style, label=f"{scorer} ({mode})")
                    axes[1].plot([p[0] * 100 for p in pts], [p[2] for p in pts], style, label=f"{scorer} ({mode})")
        axes[0].set(xlabel="budget (% of prompt tokens)", ylabel="attention-mass recall",
                    title=f"{src} ({b0['data']}): recall vs budget")
        axes[1].set(xlabel="budget (% of prompt tokens)", ylabel="relative attention-output error",
                    title=f"{src}: error vs budget")
        axes[1].legend(fontsize=6, ncol=2)
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, f"{src}_budget.png"), dpi=100)
        plt.close(fig)

        chunks = only_compared([r for r in mine if r["mode"] == "online"], lambda r: (r["scorer"], pct(r)),
                               lambda r: (r["chunking"], r["chunk"]))
        if chunks:
            print(f"\nChunking, online, evict ({src}): recall / error per chunking at "
                  f"{', '.join(str(p) for p in sorted({pct(r) for r in chunks}))} budget:\n")
            print(pivot(chunks, lambda r: (r["scorer"], pct(r)), lambda r: f"{r['chunking']}:{r['chunk']}",
                        lambda r: (r["mass_recall"], r["rel_err"]), fmt="{0[0]:.3f} / {0[1]:.3f}"))
        policies = only_compared([r for r in every_policy if r["reducer"] == "evict" and r["chunking"] == chunking
                                  and r["chunk"] == chunk], lambda r: (r["scorer"], r["mode"], pct(r)),
                                 lambda r: r["budget_policy"])
        if policies:
            print(f"\nBudget policies ({src}): the same mean tokens per (layer, kv-head), shared out uniformly, "
                  f"across a layer's heads by score (head_adaptive) or over the layers (pyramid); {chunking} chunks "
                  f"of {chunk}, evict. Relative error / mass recall:\n")
            print(pivot(policies, lambda r: (r["scorer"], r["mode"]), lambda r: (pct(r), r["budget_policy"]),
                        lambda r: (r["rel_err"], r["mass_recall"]), fmt="{0[0]:.3f} / {0[1]:.3f}"))
        merged = only_compared([r for r in every_policy if r["budget_policy"] == "uniform" and r["chunking"] == chunking
                                and r["chunk"] == chunk],
                               lambda r: (r["scorer"], r["mode"], pct(r)), lambda r: r["reducer"])
        if merged:
            print(f"\nEvict vs merge ({src}): relative error, {chunking} chunks of {chunk}:\n")
            print(pivot(merged, lambda r: (r["scorer"], r["mode"]), lambda r: (pct(r), r["reducer"]),
                        lambda r: r["rel_err"]))

    length_rows = [r for r in rows if r["source"].startswith(args.length_prefix)]
    if length_rows:
        fig, ax = plt.subplots(figsize=(6, 4))
        for mode, label in (("online", "kvcap online, budget 256"), ("oracle", "full cache, then compressed")):
            pts = sorted({(r["tokens"], r["peak_bytes"]) for r in length_rows if r["mode"] == mode})
            ax.plot([p[0] for p in pts], [p[1] / 2**20 for p in pts], "-o", label=label)
        ax.set(xlabel="prompt tokens", ylabel="peak KV + workspace (MiB, measured)", title="Peak vs video length")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "peak_vs_length.png"), dpi=100)
        plt.close(fig)
        print("\n### Peak bytes vs prompt length (counting memory resource)\n")
        print(pivot(length_rows, lambda r: (r["tokens"], r["source"]), lambda r: r["mode"],
                    lambda r: r["peak_bytes"], fmt="{:,}"))


if __name__ == "__main__":
    main()
