#!/usr/bin/env python3
"""tools/mutations/apply_mutation.py FILE OLD NEW: the one edit of a mutation, for the scripts
that check what their checks catch (tools/device/simt_mutations.sh, tools/device/sass_ordering.sh,
tools/host/host_mutations.sh). Replaces the first occurrence of OLD in FILE by NEW, and fails,
naming the file, when OLD is not there (the source moved on and the mutation must follow). An
empty OLD leaves FILE as it is: the unmutated source, as a baseline."""
import sys

path, old, new = sys.argv[1:4]
with open(path) as f:
    text = f.read()
if old and old not in text:
    sys.exit(f"mutation target not found in {path}: {old!r}")
if old:
    with open(path, "w") as f:
        f.write(text.replace(old, new, 1))
