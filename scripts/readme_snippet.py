#!/usr/bin/env python3
"""Keeps README.md's engine-loop snippet identical to examples/engine_loop.cpp.

  readme_snippet.py --check   exit 1 if they differ (run by ctest)
  readme_snippet.py --write   rewrite the README block from the example
"""
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent
source = (root / "examples" / "engine_loop.cpp").read_text()
snippet = source.split("// example-begin engine-loop\n")[1].split("// example-end engine-loop")[0]
snippet = "\n".join(line[2:] if line.startswith("  ") else line for line in snippet.rstrip().splitlines())

readme_path = root / "README.md"
readme = readme_path.read_text()
head, rest = readme.split("From `examples/engine_loop.cpp`", 1)
intro, block_and_tail = rest.split("```cpp\n", 1)
current, tail = block_and_tail.split("\n```", 1)

if "--write" in sys.argv:
    readme_path.write_text(head + "From `examples/engine_loop.cpp`" + intro + "```cpp\n" + snippet + "\n```" + tail)
elif current != snippet:
    sys.exit("README.md's engine-loop snippet differs from examples/engine_loop.cpp; run scripts/readme_snippet.py --write")
