"""`python -m bench [name ...]`: run every benchmark module (or the named ones)."""

import importlib
import pkgutil
import sys

import bench

names = sys.argv[1:] or sorted(
    m.name for m in pkgutil.iter_modules(bench.__path__) if m.name != "common" and not m.name.startswith("_")
)
for name in names:
    module = importlib.import_module(f"bench.{name}")
    if hasattr(module, "main"):
        print(f"\n== bench.{name}")
        module.main()
