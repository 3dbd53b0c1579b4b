#!/usr/bin/env python3
"""Keeps README.md's code snippets identical to the examples they quote.

Each snippet is the text between `// example-begin NAME` and `// example-end NAME` in an
example, less its common indentation, and sits in README.md in the first ```cpp block after
the line that says "From `examples/FILE`".

  readme_snippet.py --check   exit 1 if any differs (run by ctest)
  readme_snippet.py --write   rewrite the README blocks from the examples
"""
import pathlib
import sys
import textwrap

root = pathlib.Path(__file__).resolve().parent.parent
SNIPPETS = [("engine_loop.cpp", "engine-loop"), ("device_loop.cu", "device-loop")]


def snippet_of(example, name):
    source = (root / "examples" / example).read_text()
    body = source.split(f"// example-begin {name}\n")[1].split(f"// example-end {name}")[0]
    return textwrap.dedent(body).rstrip()


readme_path = root / "README.md"
readme = readme_path.read_text()
stale = []
for example, name in SNIPPETS:
    anchor = f"From `examples/{example}`"
    head, rest = readme.split(anchor, 1)
    intro, block_and_tail = rest.split("```cpp\n", 1)
    current, tail = block_and_tail.split("\n```", 1)
    snippet = snippet_of(example, name)
    if current != snippet:
        stale.append(example)
        readme = head + anchor + intro + "```cpp\n" + snippet + "\n```" + tail

if "--write" in sys.argv:
    readme_path.write_text(readme)
elif stale:
    sys.exit(f"README.md's snippets of {', '.join(stale)} differ; run scripts/readme_snippet.py --write")
