#!/usr/bin/env python3
"""tools/smollm2/make_tokenizer_fixture.py — reference token ids for the C++ tokenizer's test.

The ids come from HF `tokenizers` (pip install tokenizers), built the way SmolLM2's
tokenizer.json is configured, from the GGUF's own vocabulary and merges:

    model          BPE(vocab = tokenizer.ggml.tokens, merges = tokenizer.ggml.merges)
    pre_tokenizer  Sequence([Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)])
    decoder        ByteLevel()
    special tokens the CONTROL tokens (token_type 3): <|im_start|>, <|im_end|>, <|endoftext|>, ...

Every case is also encoded by tools/fidelity/smollm2_dump.py's Tokenizer (a second, separate
implementation); disagreements are printed and make the script fail, as does a case that
HF does not decode back to its text. Writes tests/fixtures/smollm2_tokenizer.txt:

    # comments (how it was made)
    text <hex of the UTF-8 bytes>
    ids <space-separated ids>

    python3 tools/smollm2/make_tokenizer_fixture.py [--gguf PATH] [--out FILE]
"""
import argparse
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GPL3 = "/usr/share/common-licenses/GPL-3"
GPL3_LINES = 60  # the fixture's long case: the licence's first lines, verbatim

CHAT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2? Answer in one word.<|im_end|>\n<|im_start|>assistant\n")

CASES = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "",
    "a  b",
    "x\n\n  y",
    "   ",
    "trailing spaces   ",
    "   leading spaces",
    "line one\nline two\n\n\nline three\n",
    "a\r\nb\r\n\r\nc",
    "col1\tcol2\t\tcol3\n\tindented \t mixed",
    "x" + " " * 20 + "y" + "\n" * 5,
    "I'll don't WE'RE they've she's it'd we'll I'm O'Neil 'quoted' ''double'' rock'n'roll",
    "12345 3.14 1,000,000 x2 2x a 3 b  42 -7",
    "Wait... what?!? (yes) -- [no]; {maybe} <tag/> a->b && c||d @user #tag $5 100%",
    "snake_case_var = foo(bar[0]) # comment\n    return x**2 // 3",
    CHAT,
    "<|endoftext|><|im_start|>x<|im_end|><|im_end|> <|im_start <im_end|> <|im_end|>\n",
    "café naïve résumé Über straße façade",
    "Καλημέρα κόσμε! Ελληνικά.",
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "你好，世界。日本語のテキストです。한국어 텍스트",
    "I ❤️ 🦀 and 👩‍💻! 👍🏽 ✓ → ∞",
    "100\u00a0km and\u2003em space, \u3000ideographic\u202fnarrow",
    "٣ + ٤ = ٧ and ½ ² Ⅻ ①",
    "a\x1cb\x0bc\x85d\u2028e\u00ad",
    "\tline\n \n\t\n",
    "!\x04! a\x06b \x13\x14\x16\x1d.",  # control bytes that have no token: HF drops them
]


def load_reference():
    path = os.path.join(ROOT, "tools/fidelity/smollm2_dump.py")
    spec = importlib.util.spec_from_file_location("smollm2_dump", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def hf_tokenizer(tokens, types, merges):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab, pairs))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if int(ty) == 3])
    return tok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/fixtures/smollm2_tokenizer.txt"))
    args = ap.parse_args()

    import gguf
    import tokenizers

    ref = load_reference()
    cache_dir = os.environ.get("KVCAP_CACHE", os.path.expanduser("~/.cache/kvcap/smollm2"))
    path = ref.find_gguf(args.gguf, cache_dir)
    reader = gguf.GGUFReader(path)
    field = lambda name: reader.fields[name].contents()  # noqa: E731
    tokens = [str(t) for t in field("tokenizer.ggml.tokens")]
    types = list(field("tokenizer.ggml.token_type"))
    merges = [str(m) for m in field("tokenizer.ggml.merges")]
    hf = hf_tokenizer(tokens, types, merges)
    mine = ref.Tokenizer(reader)
    if not mine.exact:
        sys.exit("the `regex` module is missing: smollm2_dump's Tokenizer would be approximate")

    cases = list(CASES)
    with open(GPL3, encoding="utf-8") as f:
        cases.append("".join(f.readlines()[:GPL3_LINES]))

    bytes_enc, vocab_set = ref.bytes_to_unicode(), set(tokens)
    failures = unasked = 0
    lines = [
        "# Reference ids of SmolLM2-135M-Instruct's tokenizer (the GGUF's vocabulary and merges),",
        f"# made by HF tokenizers {tokenizers.__version__} set up as SmolLM2's tokenizer.json: BPE, pre-tokenizer",
        "# Sequence([Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)]),",
        "# the CONTROL tokens as special tokens; each case checked against tools/fidelity/smollm2_dump.py's",
        f"# Tokenizer. The last case is the first {GPL3_LINES} lines of {GPL3}.",
        f"# GGUF: {os.path.basename(path)}",
        "# Regenerate: python3 tools/smollm2/make_tokenizer_fixture.py",
        "# Format: per case `text <hex of the UTF-8 bytes>` then `ids <space-separated ids>`.",
    ]
    for text in cases:
        ids = hf.encode(text, add_special_tokens=False).ids
        dropped = [b for b in text.encode("utf-8") if bytes_enc[b] not in vocab_set]
        if dropped:  # smollm2_dump's Tokenizer has no answer for these bytes (KeyError)
            unasked += 1
            print(f"note: {text[:40]!r} holds bytes with no token {dropped}; HF drops them, "
                  "smollm2_dump's Tokenizer is not asked", file=sys.stderr)
        else:
            other = mine.encode(text)
            if ids != other:
                failures += 1
                print(f"DISAGREE on {text[:60]!r}:\n  tokenizers {ids}\n  smollm2_dump {other}", file=sys.stderr)
        back = hf.decode(ids, skip_special_tokens=False)
        expected = bytes(b for b in text.encode("utf-8") if b not in dropped).decode("utf-8")
        if back != expected:
            failures += 1
            print(f"HF does not round-trip {text[:60]!r}: {back[:60]!r}", file=sys.stderr)
        lines.append("text " + text.encode("utf-8").hex())
        lines.append("ids " + " ".join(map(str, ids)) if ids else "ids")
    if failures:
        sys.exit(f"{failures} problem(s); fixture not written")
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{args.out}: {len(cases)} cases, {sum(len(l.split()) - 1 for l in lines if l.startswith('ids'))} ids; "
          f"tokenizers and smollm2_dump agree on all {len(cases) - unasked} cases compared")


if __name__ == "__main__":
    main()
