"""Content hashes for image tags: streamed file digests with a stat cache, and v1 ignore files.

The cache maps (path, size, mtime_ns, ctime_ns, inode) to a digest, so re-hashing an
unchanged multi-GB model costs a stat call. It never vouches for a changed file: any
write changes ctime, and a file written within the timestamp granularity of the hash
(a "racy" entry, as git calls it) is not cached at all.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

CHUNK = 1024 * 1024
RACY_SECONDS = 2.0  # coarse filesystems store seconds; stay clear of "same second" rewrites


class StatCache:
    def __init__(self, path: Path | None = None):
        self.path = path
        self.entries: dict[str, str] = {}
        self.reads = 0  # files actually read (tests and benchmarks look at this)
        if path and path.exists():
            try:
                self.entries = json.loads(path.read_text())
            except ValueError:
                self.entries = {}

    @staticmethod
    def _key(path: Path, st: os.stat_result) -> str:
        return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"

    def digest(self, path: Path) -> str:
        st = path.stat()
        key = self._key(path, st)
        cached = self.entries.get(key)
        if cached:
            return cached
        digest = file_digest(path)
        self.reads += 1
        if time.time() - max(st.st_mtime, st.st_ctime) > RACY_SECONDS and self._key(path, path.stat()) == key:
            self.entries[key] = digest
        return digest

    def save(self) -> None:
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A temporary name of its own: two programs saving at once (parallel previews, parallel tests)
            # would otherwise rename each other's file away. The last complete save wins.
            descriptor, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(json.dumps(self.entries, sort_keys=True))
            os.replace(tmp, self.path)


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


class IgnoreRules:
    """gitignore-style patterns (the syntax v1 used for .amlignore): `!` negation, `dir/`, `/anchored`, `**`."""

    def __init__(self, lines: list[str]):
        self.rules: list[tuple[bool, bool, bool, str]] = []
        for raw in lines:
            line = raw.rstrip("\n").rstrip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            line = line[1:] if negate else line
            directory_only = line.endswith("/")
            line = line.rstrip("/")
            anchored = "/" in line
            self.rules.append((negate, directory_only, anchored, line.lstrip("/")))

    @classmethod
    def for_folder(cls, folder: Path) -> IgnoreRules:
        """`.amlignore` wins over `.gitignore`, as in Azure ML v1."""
        for name in (".amlignore", ".gitignore"):
            if (folder / name).exists():
                return cls((folder / name).read_text().splitlines())
        return cls([])

    def ignored(self, rel: str, is_dir: bool) -> bool:
        """Last matching rule wins; unanchored patterns match the name at any depth."""
        result = False
        for negate, directory_only, anchored, pattern in self.rules:
            if directory_only and not is_dir:
                continue
            subject = rel if anchored else rel.rsplit("/", 1)[-1]
            if fnmatch.fnmatchcase(subject, pattern):
                result = not negate
        return result


def included_files(folder: Path, rules: IgnoreRules | None = None) -> list[str]:
    """Relative POSIX paths of every file not ignored (an ignored directory hides its contents), sorted."""
    rules = rules or IgnoreRules.for_folder(folder)
    found = []
    for root, dirs, files in os.walk(folder):
        rel_root = Path(root).relative_to(folder).as_posix()
        prefix = "" if rel_root == "." else f"{rel_root}/"
        dirs[:] = sorted(d for d in dirs if not rules.ignored(prefix + d, True))
        found += [prefix + f for f in files if not rules.ignored(prefix + f, False)]
    return sorted(found)
