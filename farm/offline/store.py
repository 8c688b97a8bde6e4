"""Where a rescore run's files live: a local directory, a shared mount or `s3://bucket/prefix`,
through pyarrow filesystems, so that any node can write its parts and the driver can read them all.

Every write is atomic: a local file is written beside its name and renamed; an S3 object appears
whole on a single PUT. A part that exists is therefore a complete part.
"""

from __future__ import annotations

import posixpath
import uuid
from typing import Any

__all__ = ["OutputStore", "filesystem_for"]


def filesystem_for(uri: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path inside it) for a local path or a URI (`s3://`, `file://`, ...).

    S3 endpoints and credentials come from the usual AWS variables (`AWS_ENDPOINT_URL_S3`, ...)."""
    from pyarrow import fs

    if "://" in uri:
        return fs.FileSystem.from_uri(uri)
    import os

    return fs.LocalFileSystem(), os.path.abspath(uri)


class OutputStore:
    """A directory of a run's files, addressed by relative names (`part-000003.parquet`)."""

    def __init__(self, uri: str):
        self.uri = uri.rstrip("/")
        self.fs, self.root = filesystem_for(self.uri)
        self.local = type(self.fs).__name__ == "LocalFileSystem"

    def __reduce__(self) -> tuple[Any, tuple[str]]:  # crosses Ray as its URI; each node opens its own
        return (OutputStore, (self.uri,))

    def path(self, name: str) -> str:
        """The full path of `name`; the empty name is the store's own path (a one-file handle)."""
        return posixpath.join(self.root, name) if name else self.root

    def sibling(self, suffix: str) -> OutputStore:
        """The store's own name with a suffix (`out` -> `out.summary.json`), as a one-file handle."""
        return OutputStore(self.uri + suffix)

    def exists(self) -> bool:
        from pyarrow import fs

        return self.fs.get_file_info(self.root).type != fs.FileType.NotFound

    def is_empty(self) -> bool:
        from pyarrow import fs

        info = self.fs.get_file_info(self.root)
        if info.type == fs.FileType.NotFound:
            return True
        return not self.fs.get_file_info(fs.FileSelector(self.root, recursive=False, allow_not_found=True))

    def write(self, name: str, data: bytes) -> None:
        """Write `name` atomically (whole or not at all)."""
        target = self.path(name)
        if not self.local:  # object stores have no directories to make (pyarrow would add marker objects)
            with self.fs.open_output_stream(target) as stream:
                stream.write(data)
            return
        self.fs.create_dir(posixpath.dirname(target), recursive=True)
        tmp = f"{target}.{uuid.uuid4().hex[:8]}.tmp"
        with self.fs.open_output_stream(tmp) as stream:
            stream.write(data)
        self.fs.move(tmp, target)

    def read(self, name: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(self.path(name)) as stream:
                return stream.read()
        except FileNotFoundError:
            return None

    def delete(self, name: str) -> None:
        try:
            self.fs.delete_file(self.path(name))
        except FileNotFoundError:
            pass

    def list(self, prefix: str = "", suffix: str = "", folder: str = "") -> list[str]:
        """Relative names directly inside `folder` that start with `prefix` and end with `suffix`, sorted."""
        from pyarrow import fs

        base = self.path(folder) if folder else self.root
        infos = self.fs.get_file_info(fs.FileSelector(base, recursive=False, allow_not_found=True))
        names = [posixpath.basename(i.path) for i in infos if i.type == fs.FileType.File]
        chosen = [n for n in names if n.startswith(prefix) and n.endswith(suffix) and not n.endswith(".tmp")]
        return sorted(posixpath.join(folder, n) if folder else n for n in chosen)

    def remove_stale(self) -> int:
        """Delete half-written local temporaries left by a killed run; S3 leaves none."""
        if not self.local:
            return 0
        from pyarrow import fs

        stale = [
            i.path
            for i in self.fs.get_file_info(fs.FileSelector(self.root, recursive=True, allow_not_found=True))
            if i.path.endswith(".tmp")
        ]
        for path in stale:
            self.fs.delete_file(path)
        return len(stale)
