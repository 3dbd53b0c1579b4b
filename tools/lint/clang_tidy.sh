#!/usr/bin/env bash
# clang-tidy over every translation unit that instantiates kvcap (tests, examples, tools; the
# device kernels through the SIMT emulator's and the reference executor's tests), with the
# checks in .clang-tidy. Prints every finding; exits 1 if one is in include/kvcap (findings in
# tests and examples are printed, not fatal).
#
#   bash tools/lint/clang_tidy.sh
#
# Needs Debian's clang-19 and clang-tidy-19 (apt-get install clang-19 clang-tidy-19). Only
# configures the `clang` preset (build/clang) for its compile_commands.json; builds nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=build/clang
tidy=${CLANG_TIDY:-clang-tidy-19}
command -v "$tidy" >/dev/null || { echo "clang_tidy.sh: $tidy not found (apt-get install clang-tidy-19)" >&2; exit 2; }

cmake --preset clang -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null

# Each source once (the header-only checks include a header and instantiate nothing).
mapfile -t sources < <(python3 - "$build/compile_commands.json" <<'PY'
import json, sys
seen = []
for entry in json.load(open(sys.argv[1])):
    f = entry["file"]
    if "/header_check/" not in f and f not in seen:
        seen.append(f)
print("\n".join(seen))
PY
)
echo "clang-tidy: $("$tidy" --version | grep -m1 -o 'version [0-9.]*'), ${#sources[@]} translation units, $(nproc) jobs"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
printf '%s\n' "${sources[@]}" |
  xargs -P "$(nproc)" -I{} sh -c "'$tidy' -p '$build' --quiet '{}' 2>/dev/null || true" >"$log"

# A header reached by two relative paths (host/../structures/x.hpp) is one finding.
findings=$(grep -E ': (warning|error): ' "$log" | sed -E ':a; s#/[^/.][^/]*/\.\./#/#; ta' | sort -u || true)
library=$(printf '%s\n' "$findings" | grep -E '/include/kvcap/' || true)
others=$(printf '%s\n' "$findings" | grep -vE '/include/kvcap/' | grep -c . || true)
echo "findings in include/kvcap: $(printf '%s\n' "$library" | grep -c . || true)"
[ -z "$library" ] || printf '%s\n' "$library"
echo "findings in tests, examples and tools (not fatal): $others"
[ "$others" = 0 ] || printf '%s\n' "$findings" | grep -vE '/include/kvcap/'
[ -z "$library" ]
