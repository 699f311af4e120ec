"""Inputs named by fsspec URLs (`s3://`, `gs://`, `hf://`, `memory://`, `file://` ...): listing, opening
and fingerprinting them. Backends are fsspec's; a missing optional one (s3fs, gcsfs) is a clean error.

A source's `storage_options` (an S3-compatible store's `endpoint_url`, `anon = true`, a `requester_pays`
bucket ...) are the keyword arguments of its file system. They travel inside each `RemoteFile`, as
canonical JSON, so a worker that opens the file builds the same file system; they are left out of its
`repr` (they may hold credentials), and their digest is part of its fingerprint (one URL on two
endpoints is two files)."""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import inspect
import io
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import fsspec
from fsspec.spec import AbstractFileSystem

#: `info()` fields that change when a remote object changes (besides its size), across common backends:
#: object stores (ETag, generation, md5Hash, crc32c, VersionId), HTTP headers (ETag, Content-MD5, Digest),
#: file servers (mtime; webhdfs's modificationTime), a zip archive's members (CRC, date_time) and the
#: Hugging Face Hub (blob_id). Left out on purpose: HTTP's Last-Modified (dynamic servers send the
#: current time, so every `info()` differs) and ftp's `modify` (minute resolution in `ls -l` listings: a
#: same-size rewrite within the minute would pass, where hashing catches it).
_VERSION_FIELDS = (
    "mtime",
    "ETag",
    "etag",
    "LastModified",
    "last_modified",
    "Content-MD5",
    "Digest",
    "generation",
    "md5Hash",
    "crc32c",
    "VersionId",
    "version_id",
    "blob_id",
    "modificationTime",
    "CRC",
    "date_time",
)
#: Fields used only when none of `_VERSION_FIELDS` is there: fsspec's memory store stamps each write
#: `created`; a local file's `created` is its ctime, which a chmod changes, so beside `mtime` it is left out.
#: A file with none of either is hashed whole to fingerprint it.
_FALLBACK_VERSION_FIELDS = ("created",)
_CHUNK = 1 << 20


class RemoteError(Exception):
    """A URL cannot be used: unknown protocol, missing backend package, or the listing failed."""


def is_url(path: str) -> bool:
    """True for a source path that fsspec resolves (it names a protocol, as in `s3://bucket/key`)."""
    return "://" in path


def encode_options(options: Mapping[str, Any] | None) -> str:
    """Storage options as canonical JSON (sorted keys; "" for none): hashable, picklable, comparable."""
    return json.dumps(dict(options), sort_keys=True, separators=(",", ":")) if options else ""


@dataclass(frozen=True)
class RemoteFile:
    """One input file behind a URL, with the storage options (`encode_options`) of its file system.
    Quacks like the parts of `Path` that callers use for input files.

    `url` names it (messages, the ledger, the cache key). A file found by listing a source's URL is
    opened through the file system of that URL (`source`) at its path there (`inner`), not through
    `url`: fsspec cannot always rebuild a file system from one of its paths (a chained
    `zip://...::file://...` URL, a host and port in `ftp://host:2121/...`)."""

    url: str
    options: str = field(default="", repr=False)
    source: str = field(default="", repr=False)  # the URL whose file system holds it; "" = `url`
    inner: str = field(default="", repr=False)  # its path within that file system (with `source`)

    @property
    def name(self) -> str:
        """The file's own name (in a chained URL, that of the file the chain names; of an http(s) URL,
        without its query: `a.jsonl.gz` of a presigned `https://host/a.jsonl.gz?X-Amz-Signature=...`)."""
        path = self.inner or _path_layer(self.url)[1]
        if path.startswith(("http://", "https://")):  # the http file system's paths are whole URLs
            path = urlsplit(path).path
        return path.rstrip("/").rsplit("/", 1)[-1]

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

    def local_path(self) -> Path | None:
        """The file on this machine's file system that a `file://` URL names (None for other protocols)."""
        fs, path = self.filesystem()
        protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
        return Path(path) if "file" in protocols else None

    def filesystem(self) -> tuple[AbstractFileSystem, str]:
        """The file system holding the file and its path there (RemoteError when it cannot be set up)."""
        if not self.source:
            return filesystem(self.url, self.options)
        return filesystem(self.source, self.options)[0], self.inner


def filesystem(url: str, options: str = "") -> tuple[AbstractFileSystem, str]:
    """The fsspec file system of a URL, built with `options` (`encode_options`), and the path within it;
    RemoteError when it cannot be used."""
    try:
        return fsspec.core.url_to_fs(url, **(json.loads(options) if options else {}))
    except ImportError as exc:  # fsspec's message names the package, e.g. "Install s3fs to access S3"
        raise RemoteError(f"{url!r} needs an optional package: {exc} (pip install it)") from exc
    except ValueError as exc:  # "Protocol not known: foo"
        raise RemoteError(f"{url!r}: {exc}") from exc
    except Exception as exc:  # the backend's constructor refused its arguments (each backend in its own way)
        given = f"storage options {', '.join(sorted(json.loads(options)))}" if options else "no storage options"
        raise RemoteError(
            f"{url!r}: its file system cannot be set up with {given}: {type(exc).__name__}: {exc}"
        ) from exc


def misspelled_options(url: str, options: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(key, the parameter it is close to, the file system's class) for each storage option that is no
    named parameter of the URL's file system class (or its bases) but nearly one: a misspelling that
    most backends would take silently into their catch-all keyword arguments and ignore. Keys far
    from every name are passed on as given (backends forward some, e.g. HTTP request options). A URL
    whose class cannot be found (chained, unknown protocol, missing package) gives []; `filesystem`
    reports those."""
    if not options or "::" in url:
        return []
    try:
        cls = fsspec.get_filesystem_class(fsspec.core.split_protocol(url)[0])
    except (ImportError, ValueError):
        return []
    named = {name for klass in cls.__mro__ for name in _named_parameters(vars(klass).get("__init__"))}
    lower = {name.lower(): name for name in named}  # `Endpoint_URL` is `endpoint_url` misspelled too
    close = (
        (key, difflib.get_close_matches(key.lower(), lower, n=1, cutoff=0.75)) for key in options if key not in named
    )
    return [(key, lower[match[0]], cls.__name__) for key, match in close if match]


def _named_parameters(init: Any) -> set[str]:
    """The parameters of an `__init__` that can be passed by name (none for a missing one, or one whose
    signature Python cannot read, such as some built-in ones)."""
    if init is None:
        return set()
    try:
        parameters = inspect.signature(init).parameters.values()
    except (TypeError, ValueError):
        return set()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name for p in parameters if p.kind in kinds and p.name != "self"}


def resolve_url(url: str, supported: Callable[[RemoteFile], bool] | None = None, options: str = "") -> list[RemoteFile]:
    """Files a URL names, sorted: a file; a folder, searched recursively; or a glob. As for local paths,
    a folder or glob skips hidden names (starting with "."; curate's work dir `.curate` among them) and,
    given `supported`, the files it rejects (a named file is kept: the caller reports it). Nothing
    found gives []. The files carry the storage `options` (`encode_options`) the listing used, and are
    named as the URL names them: a named file by the URL itself, a found one by the URL's folder (up
    to its first wildcard) and its path below it, so a chained URL keeps its chain (`::...`) and a host
    stays in its name."""
    fs, path = filesystem(url, options)
    before, head, after = _path_layer(url)
    wildcards = "*[" if head.startswith(("http://", "https://")) else "*?["  # `?` starts an http query
    pattern = None
    try:
        fs.invalidate_cache()  # a listing cached by an earlier build in this process may be stale
        if any(ch in path for ch in wildcards) and not fs.exists(path):
            found = [p for p in fs.glob(path) if fs.isfile(p)]
            root, shown_root, pattern = fixed_prefix(path), _folder_name(fixed_prefix(head)), path
        elif head.endswith("/") and fs.isdir(path):  # before `isfile`: an http page is a file too
            found, root, shown_root = fs.find(path), path.rstrip("/"), _folder_name(head)
        elif fs.isfile(path):
            return [RemoteFile(url, options, url, path)]
        elif fs.isdir(path):
            found, root, shown_root = fs.find(path), path.rstrip("/"), _folder_name(head)
        else:
            fs.info(path)  # `isfile` and `isdir` say False for a file they may not see (HTTP 403): this says why
            return []
    except FileNotFoundError:
        return []
    except Exception as exc:  # OSError, or a backend's own (an HTTP client's ConnectError, botocore's ...)
        raise RemoteError(f"cannot list {url!r}: {_describe(exc)}") from exc

    def shown(p: str) -> str:  # as the URL names it; a backend that names what it found otherwise: its own URL
        if not p.startswith(root):
            return before + fs.unstrip_protocol(p) + after
        below = p[len(root) :].lstrip("/")
        joined = shown_root + ("" if shown_root.endswith("/") else "/") + below  # `memory://` + `r/a.jsonl`
        return before + (joined if below else shown_root) + after

    # as Python's glob: a wildcard does not match a leading "."; a pattern part that starts with one does
    asked = [q for q in (pattern or "")[len(root) :].split("/") if q.startswith(".")]

    def hidden(p: str) -> bool:
        if not p.startswith(root):
            return False
        parts = p[len(root) :].strip("/").split("/")
        return any(part.startswith(".") and not any(fnmatch.fnmatchcase(part, q) for q in asked) for part in parts)

    # sorted folder by folder, as local paths are (`a/x` before `a-b/y`, where plain text puts "-" first)
    visible = [p for p in sorted(found, key=lambda p: p.split("/")) if not hidden(p)]
    saved = _dataset_folders(visible)
    if saved:
        raise RemoteError(
            f"{url!r} holds a folder written by datasets' save_to_disk ({shown(saved[0])}), which curate reads "
            "from local paths only; copy it to a local folder, or write it out with Dataset.to_parquet"
        )
    files = [RemoteFile(shown(p), options, url, p) for p in visible]
    return [f for f in files if supported(f)] if supported is not None else files


def _folder_name(head: str) -> str:
    """A folder URL without its trailing slashes, but a file system's root as `proto://`, not `proto:`."""
    stripped = head.rstrip("/")
    return stripped + "//" if stripped.endswith(":") else stripped


def _path_layer(url: str) -> tuple[str, str, str]:
    """A URL split around the layer of its chain that names the path (the first with `://`): what comes
    before it (`simplecache::`), the layer, what follows (`::file:///archive.zip`)."""
    layers = url.split("::")
    at = next((i for i, layer in enumerate(layers) if "://" in layer), 0)
    before = "".join(f"{layer}::" for layer in layers[:at])
    return before, layers[at], "".join(f"::{layer}" for layer in layers[at + 1 :])


#: Files that mark a folder written by `datasets.Dataset.save_to_disk` (as `files.is_hf_dataset_dir`).
_DATASET_MARKS = ({"dataset_info.json", "state.json"}, {"dataset_dict.json"})


def _dataset_folders(found: list[str]) -> list[str]:
    """The folders among the paths of found files that `datasets.save_to_disk` wrote, sorted."""
    names: dict[str, set[str]] = {}
    for p in found:
        folder, _, name = p.rpartition("/")
        names.setdefault(folder, set()).add(name)
    return sorted(folder for folder, held in names.items() if any(mark <= held for mark in _DATASET_MARKS))


def _describe(exc: BaseException) -> str:
    """An exception for a message: an OSError as its text, another with its type (`ConnectError: ...`)."""
    return str(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"


def fixed_prefix(pattern: str) -> str:
    """The folders of a glob pattern (or of a URL holding one) before its first wildcard
    (`a/b/*/c*.jsonl` -> `a/b`)."""
    parts = pattern.split("/")
    fixed = next((i for i, part in enumerate(parts) if any(ch in part for ch in "*?[")), len(parts))
    return "/".join(parts[:fixed])


@contextmanager
def backend_errors() -> Iterator[None]:
    """Turns what a file system's backend raises while it reads (an HTTP client's ConnectError,
    botocore's NoCredentialsError, a RemoteError when the file system cannot be set up on a worker, a
    ValueError raised in fsspec's code ...) into OSError, the input error every reader and worker reports
    with the file's name. Python's own exceptions raised elsewhere (a TypeError, a ValueError: bugs) are
    raised as they are."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, OSError):  # I/O already
            raise
        if type(exc).__module__ == "builtins":
            if not (isinstance(exc, ValueError) and _raised_in_fsspec(exc)):  # a bug: as it is
                raise
            if "support range requests" in str(exc):  # its advice (block_size=0) is for fsspec's own users
                raise OSError(NO_RANGES) from exc
        raise OSError(_describe(exc)) from exc


NO_RANGES = (
    "its HTTP server does not answer range requests, which fsspec needs to read a file past its first block "
    "(5 MB) or from the middle (Parquet, a batch read by a worker); download the file and name the copy"
)


def _raised_in_fsspec(exc: BaseException) -> bool:
    """True when the innermost frame of `exc`'s traceback is fsspec's code (its HTTP file system raises
    ValueError for a server without range requests)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__", "").split(".")[0] == "fsspec"


class _BackendFile(io.RawIOBase):
    """A remote file object whose backend errors are OSErrors (`backend_errors`); seekable. It holds
    its file system: some close what their files read from once they are collected (a zip archive)."""

    def __init__(self, raw: IO[bytes], fs: AbstractFileSystem):
        self._raw = raw
        self._fs = fs

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        with backend_errors():
            return self._raw.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        with backend_errors():
            return self._raw.seek(offset, whence)

    def tell(self) -> int:
        with backend_errors():
            return self._raw.tell()

    def close(self) -> None:
        if not self.closed:
            try:
                with backend_errors():
                    self._raw.close()
            finally:
                super().close()


def open_remote(file: RemoteFile) -> IO[bytes]:
    """A binary, seekable file object streaming the file's bytes (the caller closes it); what its
    backend raises comes out as OSError."""
    with backend_errors():
        fs, path = file.filesystem()
        return _BackendFile(fs.open(path, "rb"), fs)


def _size_and_versions(file: RemoteFile) -> tuple[Any, list[str]]:
    """A remote file's size and the version fields its `info()` has (mtime, ETag, LastModified ...)."""
    with backend_errors():
        fs, path = file.filesystem()
        info: dict[str, Any] = fs.info(path)
    versions = [f"{key}={info[key]}" for key in _VERSION_FIELDS if info.get(key) is not None]
    if not versions:
        versions = [f"{key}={info[key]}" for key in _FALLBACK_VERSION_FIELDS if info.get(key) is not None]
    return info.get("size"), versions


def version_stamp(file: RemoteFile) -> str:
    """The size and version fields, without reading the file: what a worker checks before it reads a
    byte range of a file the scan cut (`fingerprint` may hash it)."""
    size, versions = _size_and_versions(file)
    return ",".join([f"size={size}", *versions])


def fingerprint(file: RemoteFile) -> str:
    """What identifies this version of a remote file: size plus the version fields `info()` has, or a
    hash of its bytes when it has none, and a digest of its storage options when it has some."""
    size, versions = _size_and_versions(file)
    if not versions:
        digest = hashlib.sha256()
        with open_remote(file) as raw:
            while chunk := raw.read(_CHUNK):
                digest.update(chunk)
        versions = [f"sha256={digest.hexdigest()}"]
    if file.options:
        versions.append(f"options={hashlib.sha256(file.options.encode()).hexdigest()[:16]}")
    return f"{file.url}:{size}:{','.join(versions)}"
