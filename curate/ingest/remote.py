"""Inputs named by fsspec URLs (`s3://`, `gs://`, `hf://`, `memory://`, `file://` ...): listing, opening
and fingerprinting them. Backends are fsspec's; a missing optional one (s3fs, gcsfs) is a clean error."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import IO, Any

import fsspec
from fsspec.spec import AbstractFileSystem

#: `info()` fields that change when a remote object changes (besides its size), across common backends.
_VERSION_FIELDS = (
    "mtime",
    "ETag",
    "etag",
    "LastModified",
    "last_modified",
    "generation",
    "md5Hash",
    "VersionId",
    "version_id",
    "blob_id",
)
_CHUNK = 1 << 20


class RemoteError(Exception):
    """A URL cannot be used: unknown protocol, missing backend package, or the listing failed."""


def is_url(path: str) -> bool:
    """True for a source path that fsspec resolves (it names a protocol, as in `s3://bucket/key`)."""
    return "://" in path


@dataclass(frozen=True)
class RemoteFile:
    """One input file behind a URL. Quacks like the parts of `Path` that callers use for input files."""

    url: str

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parents(self) -> tuple[()]:
        return ()

    def resolve(self) -> RemoteFile:
        return self

    def is_dir(self) -> bool:
        return False

    def is_file(self) -> bool:
        return True

    def __str__(self) -> str:
        return self.url


def filesystem(url: str) -> tuple[AbstractFileSystem, str]:
    """The fsspec file system of a URL and the path within it; RemoteError when it cannot be used."""
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as exc:  # fsspec's message names the package, e.g. "Install s3fs to access S3"
        raise RemoteError(f"{url!r} needs an optional package: {exc} (pip install it)") from exc
    except ValueError as exc:  # "Protocol not known: foo"
        raise RemoteError(f"{url!r}: {exc}") from exc


def resolve_url(url: str) -> list[RemoteFile]:
    """Files a URL names: a file, a folder (searched recursively, hidden names skipped) or a glob; sorted.
    Unsupported suffixes are kept (the caller reports them); nothing found gives []."""
    fs, path = filesystem(url)
    try:
        if any(ch in path for ch in "*?[") and not fs.exists(path):
            found = [p for p in fs.glob(path) if fs.isfile(p)]
        elif fs.isfile(path):
            found = [path]
        elif fs.isdir(path):
            root = path.rstrip("/")
            found = [p for p in fs.find(path) if not any(part.startswith(".") for part in p[len(root) :].split("/"))]
        else:
            found = []
    except OSError as exc:
        raise RemoteError(f"cannot list {url!r}: {exc}") from exc
    return [RemoteFile(fs.unstrip_protocol(p)) for p in sorted(found)]


def open_remote(file: RemoteFile) -> IO[bytes]:
    """A binary, seekable file object streaming the file's bytes (the caller closes it)."""
    fs, path = filesystem(file.url)
    return fs.open(path, "rb")


def fingerprint(file: RemoteFile) -> str:
    """What identifies this version of a remote file: size plus the version fields `info()` has
    (mtime, ETag, LastModified ...), or a hash of its bytes when it has none."""
    fs, path = filesystem(file.url)
    info: dict[str, Any] = fs.info(path)
    versions = [f"{key}={info[key]}" for key in _VERSION_FIELDS if info.get(key) is not None]
    if not versions:
        digest = hashlib.sha256()
        with fs.open(path, "rb") as raw:
            while chunk := raw.read(_CHUNK):
                digest.update(chunk)
        versions = [f"sha256={digest.hexdigest()}"]
    return f"{file.url}:{info.get('size')}:{','.join(versions)}"
