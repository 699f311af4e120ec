"""Sources named by fsspec URLs (memory://, file://): same shards as local files, config errors with the
location, cache keys that follow remote edits, quarantine entries that name the URL."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import fsspec
import polars as pl
import pytest
import zstandard
from fsspec.implementations.memory import MemoryFileSystem

import curate
from curate.config import load_config
from curate.ingest.files import iter_lines, resolve_paths
from curate.ingest.remote import RemoteFile, encode_options, fingerprint
from tests.test_build import output_bytes

FIXTURE = Path(__file__).parent / "fixtures" / "remote_inputs" / "gsm8k.jsonl"
ROWS = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def _parquet(rows: list[dict[str, Any]]) -> bytes:
    buf = io.BytesIO()
    pl.DataFrame(rows).write_parquet(buf)
    return buf.getvalue()


#: A folder of three formats; a.jsonl repeats one record of c.parquet so exact dedup has work to do.
FILES = {
    "data/a.jsonl": _jsonl(ROWS[:8] + ROWS[16:17]),
    "data/b.jsonl.zst": zstandard.ZstdCompressor().compress(_jsonl(ROWS[8:16])),
    "data/c.parquet": _parquet(ROWS[16:]),
    "data/.hidden/skip.jsonl": _jsonl(ROWS[:2]),
}


@pytest.fixture
def mem() -> Iterator[fsspec.AbstractFileSystem]:
    """The process-wide memory file system, emptied before and after each test."""
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]
    yield fs
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]


def put(fs: fsspec.AbstractFileSystem, root: str, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        fs.pipe(f"{root}/{name}", data)


def write_local(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def config(path: str) -> dict[str, Any]:
    return {
        "pipeline": {"name": "remote", "seed": 3, "output": "out", "batch_size": 5},
        "sources": [
            {
                "name": "gsm",
                "path": path,
                "format": "prompt_response",
                "fields": {"prompt": "question", "response": "answer"},
            }
        ],
        "stages": [{"use": "normalize"}, {"use": "exact_dedup"}],
    }


def shards(out: Path) -> dict[str, bytes]:
    return {name: data for name, data in output_bytes(out).items() if name.startswith("shards/")}


def build(base: Path, path: str) -> curate.BuildResult:
    base.mkdir(parents=True, exist_ok=True)
    return curate.build(config(path), base_dir=base)


@pytest.mark.parametrize(
    ("local", "remote"), [("data/*.jsonl", "memory://bucket/data/*.jsonl"), ("data", "memory://bucket/data")]
)
def test_memory_url_builds_the_same_shards_as_local_files(tmp_path, mem, local, remote):
    write_local(tmp_path / "local", FILES)
    put(mem, "/bucket", FILES)
    on_disk = build(tmp_path / "local", local)
    from_url = build(tmp_path / "remote", remote)
    assert shards(on_disk.output) and shards(on_disk.output) == shards(from_url.output)
    assert on_disk.manifest["sources"]["gsm"]["records_in"] == from_url.manifest["sources"]["gsm"]["records_in"]
    # the ledger names each file by its URL; hidden names inside a folder are skipped
    files = sorted(set(from_url.ledger["file"]))
    expected = ["a.jsonl"] if "*" in remote else ["a.jsonl", "b.jsonl.zst", "c.parquet"]
    assert files == [f"memory://bucket/data/{name}" for name in expected]
    assert from_url.manifest["sources"]["gsm"]["records_in"] == (9 if "*" in remote else 25)


def test_file_url_builds_the_same_shards_as_a_local_path(tmp_path):
    write_local(tmp_path, FILES)
    on_disk = build(tmp_path / "local", str(tmp_path / "data"))
    from_url = build(tmp_path / "remote", f"file://{tmp_path / 'data'}")
    assert shards(on_disk.output) == shards(from_url.output)
    assert set(from_url.ledger["file"]) == {
        f"file://{tmp_path / 'data' / n}" for n in ("a.jsonl", "b.jsonl.zst", "c.parquet")
    }


def test_resolving_and_reading_stream_through_fsspec(mem):
    put(mem, "/bucket", FILES)
    files = resolve_paths("memory://bucket/data", Path("/unused"))
    assert all(isinstance(f, RemoteFile) for f in files)
    assert [f.name for f in files] == ["a.jsonl", "b.jsonl.zst", "c.parquet"]
    assert list(iter_lines(files[1])) == _jsonl(ROWS[8:16]).splitlines()  # .zst decompressed on the fly
    assert resolve_paths("memory://bucket/data/*.csv", Path("/unused")) == []


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("memory://bucket/missing.jsonl", "sources[0].path: not found: 'memory://bucket/missing.jsonl'"),
        ("memory://bucket/data/*.csv", "sources[0].path: no file matches 'memory://bucket/data/*.csv'"),
        ("nosuchproto://bucket/a.jsonl", "sources[0].path: 'nosuchproto://bucket/a.jsonl': Protocol not known"),
        # a glob leaves unsupported files out, as a local glob does, and says so; a named one is reported
        (
            "memory://bucket/notes/*",
            "sources[0].path: no file curate reads in 'memory://bucket/notes/*': 1 other file(s), such as "
            "'readme.md'; it reads .jsonl, .json, .parquet, .csv, .txt (optionally .gz/.zst)",
        ),
        ("memory://bucket/notes/readme.md", "sources[0].path: 'readme.md' is not a supported file"),
    ],
)
def test_bad_urls_are_config_errors_with_the_location(tmp_path, mem, path, expected):
    put(mem, "/bucket", {**FILES, "notes/readme.md": b"# hi\n"})
    with pytest.raises(curate.ConfigError) as info:
        curate.build(config(path), base_dir=tmp_path)
    problems = info.value.problems
    assert any(p.startswith(expected) for p in problems), problems
    assert not any("relative to" in p for p in problems)


def test_a_missing_backend_names_the_package_to_install(tmp_path, monkeypatch):
    """As for s3:// without s3fs (the dev extra installs it): a protocol whose backend is not installed."""
    from fsspec.registry import known_implementations

    backend = {"class": "curate_no_such_package.NopeFileSystem", "err": "Install curate-nope to access nope://"}
    monkeypatch.setitem(known_implementations, "nope", backend)
    with pytest.raises(curate.ConfigError) as info:
        curate.build(config("nope://bucket/data/*.jsonl"), base_dir=tmp_path)
    [problem] = info.value.problems
    assert problem.startswith("sources[0].path: 'nope://bucket/data/*.jsonl' needs an optional package")
    assert "Install curate-nope to access nope://" in problem


def test_a_changed_remote_file_invalidates_the_cache(tmp_path, mem):
    put(mem, "/bucket", FILES)
    first = build(tmp_path, "memory://bucket/data")
    before = shards(first.output)
    again = build(tmp_path, "memory://bucket/data")
    assert first.run["cached_passes"] == [] and len(again.run["cached_passes"]) == 1
    # same size, and the memory file system reports no mtime/ETag: only the content hash can tell
    old = mem.cat("/bucket/data/a.jsonl")
    first_answer = ROWS[0]["answer"]
    new = old.replace(first_answer[:10].encode(), first_answer[:10].upper().encode(), 1)
    assert new != old and len(new) == len(old)
    mem.pipe("/bucket/data/a.jsonl", new)
    edited = build(tmp_path, "memory://bucket/data")
    assert edited.run["cached_passes"] == []
    assert shards(edited.output) != before


class _UnversionedFileSystem(MemoryFileSystem):
    """A memory store whose `info()` has no version field (as some HTTP servers): only name, size, type."""

    protocol = "unversioned"
    store: ClassVar[dict[str, Any]] = {}
    pseudo_dirs: ClassVar[list[str]] = [""]

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return "/" + path.removeprefix("unversioned://").lstrip("/")

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return {k: v for k, v in super().info(path, **kwargs).items() if k in ("name", "size", "type")}


def test_remote_fingerprints_use_version_fields_or_the_bytes(tmp_path, mem):
    import zipfile

    fsspec.register_implementation("unversioned", _UnversionedFileSystem, clobber=True)
    bare = fsspec.filesystem("unversioned")
    bare.pipe("/bucket/x.jsonl", b'{"text": "one"}\n')
    bare_key = fingerprint(RemoteFile("unversioned:///bucket/x.jsonl"))
    assert "sha256=" in bare_key
    bare.pipe("/bucket/x.jsonl", b'{"text": "two"}\n')
    assert fingerprint(RemoteFile("unversioned:///bucket/x.jsonl")) != bare_key
    (tmp_path / "x.jsonl").write_bytes(b"{}\n")
    file_key = fingerprint(RemoteFile(f"file://{tmp_path / 'x.jsonl'}"))
    assert "mtime=" in file_key and "sha256=" not in file_key
    (tmp_path / "x.jsonl").chmod(0o600)  # a local file's `created` is its ctime: not part of its stamp
    assert fingerprint(RemoteFile(f"file://{tmp_path / 'x.jsonl'}")) == file_key
    mem.pipe("/bucket/x.jsonl", b'{"text": "one"}\n')  # memory: when it was written, not its bytes
    memory_key = fingerprint(RemoteFile("memory:///bucket/x.jsonl"))
    assert "created=" in memory_key and "sha256=" not in memory_key
    mem.pipe("/bucket/x.jsonl", b'{"text": "two"}\n')
    assert fingerprint(RemoteFile("memory:///bucket/x.jsonl")) != memory_key
    keys = []  # a zip archive's member: its CRC and time; the same size, other bytes: another key
    for text in (b'{"text": "one"}\n', b'{"text": "two"}\n'):
        with zipfile.ZipFile(tmp_path / "store.zip", "w") as archive:
            archive.writestr("x.jsonl", text)
        keys.append(fingerprint(RemoteFile(f"zip://x.jsonl::file://{tmp_path / 'store.zip'}")))
    assert "CRC=" in keys[0] and "sha256=" not in keys[0] and keys[0] != keys[1]


def test_a_bad_remote_record_is_quarantined_with_the_url_and_line(tmp_path, mem):
    lines = _jsonl(ROWS[:4]).splitlines()
    lines[2] = b'{"question": "cut short'
    mem.pipe("/bucket/bad.jsonl", b"\n".join(lines) + b"\n")
    result = build(tmp_path, "memory://bucket/bad.jsonl")
    rows = [json.loads(line) for line in (result.output / "quarantine" / "gsm.jsonl").read_text().splitlines()]
    assert [(r["file"], r["line"]) for r in rows] == [("memory://bucket/bad.jsonl", 3)]
    bad = result.ledger.filter(pl.col("status") == "quarantined")
    assert bad.select("file", "line").rows() == [("memory://bucket/bad.jsonl", 3)]
    assert result.manifest["sources"]["gsm"]["records_kept"] == 3


MIXED = {
    "data/a.jsonl": _jsonl(ROWS[:4]),
    "data/.h.jsonl": _jsonl(ROWS[4:6]),
    "data/.cache/c.jsonl": _jsonl(ROWS[6:8]),
    "data/sub/.h2.jsonl": _jsonl(ROWS[8:10]),
    "data/sub/d.jsonl": _jsonl(ROWS[10:12]),
    "data/README.md": b"# notes\n",
    "data/mixture.toml": b"[pipeline]\n",
}


@pytest.mark.parametrize("pattern", ["data", "data/*.jsonl", "data/**/*.jsonl", "data/*", "data/**"])
def test_url_folders_and_globs_list_what_local_paths_list(tmp_path, mem, pattern):
    # hidden names are skipped and unsupported files (README.md, the config) left out, as locally
    write_local(tmp_path, MIXED)
    put(mem, "/bucket", MIXED)
    local = [str(p.relative_to(tmp_path)) for p in resolve_paths(pattern, tmp_path)]
    remote = [f.url.removeprefix("memory://bucket/") for f in resolve_paths(f"memory://bucket/{pattern}", tmp_path)]
    files = resolve_paths(f"file://{tmp_path}/{pattern}", tmp_path)
    via_file = [f.url.removeprefix(f"file://{tmp_path}/") for f in files]
    assert local and remote == local and via_file == local
    assert not any(part.startswith(".") for name in local for part in name.split("/"))


def test_a_file_url_source_never_reads_the_builds_own_output(tmp_path):
    # the output lies inside the folder a file:// glob searches: it must not become an input next time
    write_local(tmp_path / "d", {"in.jsonl": _jsonl(ROWS[:4])})
    spec = config(f"file://{tmp_path}/d/**/*.jsonl*") | {"output": {"formats": ["jsonl", "jsonl.zst"]}}
    spec["pipeline"] = {**spec["pipeline"], "output": "d/out"}
    counts = [curate.build(spec, base_dir=tmp_path).manifest["totals"]["records_in"] for _ in range(2)]
    assert counts == [4, 4]


@pytest.mark.parametrize("source", ["d", "file://{tmp}/d"])
def test_a_source_never_reads_the_work_dir_it_holds(tmp_path, source):
    # the work dir lies inside the folder a source searches: its batch files are no input next time
    write_local(tmp_path / "d", {"in.parquet": _parquet(ROWS[:4])})
    spec = config(source.format(tmp=tmp_path))
    work = tmp_path / "d" / "cache"
    counts = [curate.build(spec, base_dir=tmp_path, work_dir=work).manifest["totals"]["records_in"] for _ in range(2)]
    assert counts == [4, 4] and any(work.glob("pass-*/*.parquet"))


def test_an_output_that_would_hold_a_file_url_input_is_refused(tmp_path):
    write_local(tmp_path / "d", {"in.jsonl": _jsonl(ROWS[:4])})
    spec = config(f"file://{tmp_path}/d/in.jsonl")
    with pytest.raises(curate.FatalError, match="would contain input"):
        curate.build(spec, output=tmp_path / "d", base_dir=tmp_path)


# ------------------------------------------------------------- storage options
# fsspec's `dir://` file system needs its `path` option (the folder its paths are relative to) and reads
# local files, so a worker process can open them too: it shows whether the options reach every worker.


def with_options(path: str, options: dict[str, Any]) -> dict[str, Any]:
    spec = config(path)
    spec["sources"][0]["storage_options"] = options
    return spec


@pytest.mark.parametrize("workers", [1, 2])
def test_storage_options_build_the_file_system_in_every_worker(tmp_path, workers):
    write_local(tmp_path / "store", FILES)
    (tmp_path / "local").mkdir()
    on_disk = curate.build(config(str(tmp_path / "store" / "data")), base_dir=tmp_path / "local")
    spec = with_options("dir://data", {"path": str(tmp_path / "store")})
    (tmp_path / "remote").mkdir()
    from_url = curate.build(spec, base_dir=tmp_path / "remote", workers=workers)
    assert shards(on_disk.output) and shards(on_disk.output) == shards(from_url.output)
    assert set(from_url.ledger["file"]) == {f"dir://data/{n}" for n in ("a.jsonl", "b.jsonl.zst", "c.parquet")}


def test_a_file_system_that_cannot_be_set_up_is_a_config_error_naming_the_options(tmp_path):
    # `dir://` without its folder, and with a file system that is not one
    for options, given in (({}, "no storage options"), ({"path": str(tmp_path), "fs": 3}, "storage options fs, path")):
        with pytest.raises(curate.ConfigError) as info:
            curate.build(with_options("dir://data", options), base_dir=tmp_path)
        [problem] = info.value.problems
        assert problem.startswith(f"sources[0].path: 'dir://data': its file system cannot be set up with {given}: ")


def test_storage_options_must_be_json_values_for_a_url(tmp_path):
    import datetime

    with pytest.raises(curate.ConfigError) as info:
        curate.build(with_options(str(tmp_path), {"anon": True}), base_dir=tmp_path)
    assert info.value.problems == [
        f"sources[0].storage_options: only for fsspec URLs (s3://...), and path {str(tmp_path)!r} is local"
    ]
    with pytest.raises(curate.ConfigError) as info:
        curate.build(with_options("memory://bucket/a.jsonl", {"since": datetime.date(2026, 1, 1)}), base_dir=tmp_path)
    [problem] = info.value.problems
    assert problem.startswith("sources[0].storage_options: values must be strings, numbers, booleans, lists or tables")
    with pytest.raises(curate.ConfigError) as info:
        curate.build(with_options("memory://bucket/a.jsonl", ["anon"]), base_dir=tmp_path)  # type: ignore[arg-type]
    assert "sources[0].storage_options: must be a table of values, got a list" in info.value.problems


def test_storage_options_stay_out_of_reprs_and_into_fingerprints(tmp_path, mem):
    put(mem, "/bucket", FILES)
    secret = {"client_kwargs": {"aws_secret_access_key": "s3cr3t"}}
    file = RemoteFile("memory:///bucket/data/a.jsonl", encode_options(secret))
    assert "s3cr3t" not in repr(file)
    loaded = load_config(with_options("memory://bucket/data", secret), base_dir=tmp_path)
    assert "s3cr3t" not in repr(loaded.sources[0])
    assert [f.options for f in loaded.sources[0].files] == [encode_options(secret)] * 3
    # one URL with other options is another input (another endpoint may serve other bytes)
    assert fingerprint(file) != fingerprint(RemoteFile(file.url)) == fingerprint(RemoteFile(file.url, ""))


def test_a_misspelled_storage_option_is_a_config_error_with_the_closest_name(tmp_path):
    write_local(tmp_path / "store", FILES)
    options = {"pth": str(tmp_path / "store"), "target_option": {}}
    with pytest.raises(curate.ConfigError) as info:
        curate.build(with_options("dir://data", options), base_dir=tmp_path)
    assert info.value.problems == [
        "sources[0].storage_options.pth: not an option of DirFileSystem, did you mean 'path'",
        "sources[0].storage_options.target_option: not an option of DirFileSystem, did you mean 'target_options'",
    ]
    with pytest.raises(curate.ConfigError) as info:  # other letter case: a misspelling too
        curate.build(with_options("dir://data", {"PATH": str(tmp_path / "store")}), base_dir=tmp_path)
    assert info.value.problems == [
        "sources[0].storage_options.PATH: not an option of DirFileSystem, did you mean 'path'"
    ]
    # a key far from every parameter name is passed on as given (backends forward some)
    loaded = load_config(
        with_options("dir://data", {"path": str(tmp_path / "store"), "x_custom": 1}), base_dir=tmp_path
    )
    assert len(loaded.sources[0].files) == 3


def test_read_source_takes_storage_options(tmp_path):
    write_local(tmp_path / "store", FILES)
    local = curate.read_source(
        tmp_path / "store" / "data" / "a.jsonl",
        format="prompt_response",
        fields={"prompt": "question", "response": "answer"},
    )
    remote = curate.read_source(
        "dir://data/a.jsonl",
        format="prompt_response",
        fields={"prompt": "question", "response": "answer"},
        storage_options={"path": str(tmp_path / "store")},
    )
    assert remote.height == 9 and remote.drop("_file").equals(local.drop("_file"))
    assert remote["_file"].unique().to_list() == ["dir://data/a.jsonl"]


def test_storage_options_survive_to_toml(tmp_path):
    write_local(tmp_path / "store", FILES)
    options = {"path": str(tmp_path / "store"), "target_options": {"auto_mkdir": False}}
    pipeline = curate.Pipeline.from_dict(with_options("dir://data", options), base_dir=tmp_path)
    pipeline.to_toml(tmp_path / "mixture.toml")
    again = curate.Pipeline.from_toml(tmp_path / "mixture.toml").config.sources[0]
    assert again.storage_options == options
    assert again.files == pipeline.config.sources[0].files


# ------------------------------------------------------------- URLs fsspec cannot rebuild from a path
# A listed file is opened through its source URL's file system, not through its own URL: a chained URL
# (`zip://...::file://...`) or a host in the URL would be lost on the way (fsspec's `unstrip_protocol`).


@pytest.mark.parametrize(("inside", "workers"), [("data/*.jsonl", 1), ("data", 2)])
def test_a_chained_url_is_read_through_its_chain(tmp_path, inside, workers):
    import zipfile

    write_local(tmp_path / "local", FILES)
    with zipfile.ZipFile(tmp_path / "store.zip", "w") as archive:
        for name, data in FILES.items():
            archive.writestr(name, data)
    on_disk = build(tmp_path / "local", inside)
    (tmp_path / "remote").mkdir()
    chained = f"zip://{inside}::file://{tmp_path / 'store.zip'}"
    from_url = curate.build(config(chained), base_dir=tmp_path / "remote", workers=workers)
    assert shards(on_disk.output) and shards(on_disk.output) == shards(from_url.output)
    names = ["a.jsonl"] if "*" in inside else ["a.jsonl", "b.jsonl.zst", "c.parquet"]
    assert sorted(set(from_url.ledger["file"])) == [f"zip://data/{n}::file://{tmp_path / 'store.zip'}" for n in names]


class _HostedFileSystem(MemoryFileSystem):
    """A memory store behind `hosted://HOST/...`: like ftp://, the host is an argument of the file system
    (taken from the URL) and is not part of its paths; only host `files.example` answers."""

    protocol = "hosted"
    store: ClassVar[dict[str, Any]] = {}
    pseudo_dirs: ClassVar[list[str]] = [""]

    def __init__(self, host: str = "", **kwargs: Any):
        if host != "files.example":
            raise ConnectionRefusedError(f"no server at {host!r}")
        super().__init__(**kwargs)

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        path = path.removeprefix("hosted://")
        return "/" + path.split("/", 1)[1] if "/" in path else "/"

    @staticmethod
    def _get_kwargs_from_urls(path: str) -> dict[str, Any]:
        return {"host": path.removeprefix("hosted://").split("/", 1)[0]}


def test_a_url_with_a_host_keeps_it(tmp_path):
    fsspec.register_implementation("hosted", _HostedFileSystem, clobber=True)
    _HostedFileSystem.store.clear()
    put(fsspec.filesystem("hosted", host="files.example"), "/bucket", FILES)
    write_local(tmp_path / "local", FILES)
    on_disk = build(tmp_path / "local", "data")
    from_url = build(tmp_path / "remote", "hosted://files.example/bucket/data")
    assert shards(on_disk.output) == shards(from_url.output)
    assert set(from_url.ledger["file"]) == {
        f"hosted://files.example/bucket/data/{n}" for n in ("a.jsonl", "b.jsonl.zst", "c.parquet")
    }


# ------------------------------------------------------------- what a backend raises
class ConnectError(Exception):
    """An HTTP client's error, which is no OSError (httpx, aiohttp and botocore have their own)."""


class _OfflineFileSystem(MemoryFileSystem):
    """`offline://`: every call fails as a network backend does without network."""

    protocol = "offline"

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        raise ConnectError("Name or service not known")


class _Unreadable(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise ConnectError("connection reset")


class _DroppingFileSystem(MemoryFileSystem):
    """`dropping://`: lists the memory store, but the connection drops on every read."""

    protocol = "dropping"

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return MemoryFileSystem._strip_protocol(path.replace("dropping://", "memory://", 1))

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        return io.BufferedReader(_Unreadable())


def test_what_a_backend_raises_is_a_clean_error_naming_the_url(tmp_path, mem):
    fsspec.register_implementation("offline", _OfflineFileSystem, clobber=True)
    fsspec.register_implementation("dropping", _DroppingFileSystem, clobber=True)
    with pytest.raises(curate.ConfigError) as info:
        build(tmp_path, "offline://bucket/data")
    assert info.value.problems == [
        "sources[0].path: cannot list 'offline://bucket/data': ConnectError: Name or service not known"
    ]
    put(mem, "/bucket", FILES)
    for fmt in ("auto", "prompt_response"):  # read to detect the format, or to fingerprint it
        spec = config("dropping://bucket/data/a.jsonl")
        if fmt == "auto":
            del spec["sources"][0]["format"], spec["sources"][0]["fields"]
        with pytest.raises(curate.FatalError, match=r"^cannot read input dropping://bucket/data/a.jsonl: "):
            curate.build(spec, base_dir=tmp_path)


def test_a_saved_dataset_folder_behind_a_url_is_a_config_error(tmp_path, mem):
    import datasets

    datasets.Dataset.from_list(ROWS[:3]).save_to_disk(str(tmp_path / "d" / "saved"))
    write_local(tmp_path / "d", {"good.jsonl": _jsonl(ROWS[3:5])})
    assert len(load_config(config(str(tmp_path / "d")), base_dir=tmp_path).sources[0].files) == 2  # read locally
    for url in (f"file://{tmp_path}/d", f"file://{tmp_path}/d/saved"):  # on this machine: by its path
        with pytest.raises(curate.ConfigError) as info:
            load_config(config(url), base_dir=tmp_path)
        assert info.value.problems == [
            f"sources[0].path: {url!r} holds a folder written by datasets' save_to_disk ({tmp_path}/d/saved), "
            f"which curate reads by its local path, not through a URL: write {url.removeprefix('file://')!r} as "
            "the source's path"
        ]
    put(mem, "/bucket/d/saved", {p.name: p.read_bytes() for p in (tmp_path / "d" / "saved").iterdir()})
    with pytest.raises(curate.ConfigError) as info:  # elsewhere: copied here, or written out as Parquet
        load_config(config("memory://bucket/d"), base_dir=tmp_path)
    assert info.value.problems == [
        "sources[0].path: 'memory://bucket/d' holds a folder written by datasets' save_to_disk "
        "(memory://bucket/d/saved), which curate reads from local paths only; copy it to a local folder, or write "
        "it out with Dataset.to_parquet"
    ]


def test_a_relative_file_url_is_relative_to_the_config_folder(tmp_path, monkeypatch):
    write_local(tmp_path / "cfg", FILES)
    monkeypatch.chdir(tmp_path)  # not the config's folder
    [file] = resolve_paths("file://data/a.jsonl", tmp_path / "cfg")
    assert file.url == f"file://{tmp_path / 'cfg' / 'data' / 'a.jsonl'}" and file.local_path().is_file()


def test_a_relative_file_url_inside_a_chain_is_relative_to_the_config_folder(tmp_path, monkeypatch):
    import zipfile

    (tmp_path / "cfg").mkdir()
    with zipfile.ZipFile(tmp_path / "cfg" / "store.zip", "w") as archive:
        archive.writestr("data/a.jsonl", FILES["data/a.jsonl"])
    monkeypatch.chdir(tmp_path)  # not the config's folder
    [file] = resolve_paths("zip://data/*.jsonl::file://store.zip", tmp_path / "cfg")
    assert file.url == f"zip://data/a.jsonl::file://{tmp_path / 'cfg' / 'store.zip'}"
    assert list(iter_lines(file)) == FILES["data/a.jsonl"].splitlines()


def test_a_cache_chained_url_is_named_by_its_path_layer(tmp_path, mem):
    put(mem, "/bucket", FILES)
    files = resolve_paths("simplecache::memory://bucket/data", tmp_path)
    assert [f.url for f in files] == [
        f"simplecache::memory://bucket/data/{n}" for n in ("a.jsonl", "b.jsonl.zst", "c.parquet")
    ]
    assert list(iter_lines(files[0])) == _jsonl(ROWS[:8] + ROWS[16:17]).splitlines()


def test_names_of_http_urls_leave_out_the_query_and_file_localhost_is_absolute(tmp_path):
    assert RemoteFile("https://host/d/a.jsonl.gz?X-Amz-Signature=abc").name == "a.jsonl.gz"
    assert RemoteFile("zip://d/a.jsonl::file:///x.zip").name == "a.jsonl"
    write_local(tmp_path, {"a.jsonl": b"{}\n"})
    [file] = resolve_paths(f"file://localhost{tmp_path}/a.jsonl", Path("/elsewhere"))
    assert file.local_path() == tmp_path / "a.jsonl"


def test_a_bug_in_reading_is_not_taken_for_a_backend_error():
    from curate.ingest.remote import backend_errors

    with pytest.raises(TypeError), backend_errors():
        raise TypeError("a bug")
    with pytest.raises(OSError, match="ConnectError: reset"), backend_errors():
        raise ConnectError("reset")


#: Two folders whose names sort one way as paths and the other as text ("a" < "a-b", but "a-" < "a/"),
#: sharing one document: the copy read first is the one exact_dedup keeps.
ORDER = {
    "tree/a/x.jsonl": _jsonl(ROWS[:3]),
    "tree/a-b/y.jsonl": _jsonl(ROWS[2:5]),
    "tree/a/.dot.jsonl": _jsonl(ROWS[5:6]),
    "tree/.h/b/x.jsonl": _jsonl(ROWS[6:7]),
}


@pytest.mark.parametrize(
    "pattern", ["tree", "tree/*/*.jsonl", "tree/**/*.jsonl", "tree/a/.*.jsonl", "tree/*/.*", "tree/.*/**/*.jsonl"]
)
def test_urls_list_files_in_the_order_and_with_the_hidden_rule_of_local_paths(tmp_path, mem, pattern):
    write_local(tmp_path, ORDER)
    put(mem, "/bucket", ORDER)
    local = [str(p.relative_to(tmp_path)) for p in resolve_paths(pattern, tmp_path)]
    remote = [f.url.removeprefix("memory://bucket/") for f in resolve_paths(f"memory://bucket/{pattern}", tmp_path)]
    via_file = [
        f.url.removeprefix(f"file://{tmp_path}/") for f in resolve_paths(f"file://{tmp_path}/{pattern}", tmp_path)
    ]
    assert local and remote == local and via_file == local
    assert ("tree/a/.dot.jsonl" in local) == pattern.endswith((".*", ".*.jsonl"))  # `.*` asks for hidden names
    assert ("tree/.h/b/x.jsonl" in local) == ("/.*/" in pattern)  # a wildcard skips hidden names


def test_the_same_files_behind_a_url_keep_the_same_duplicate(tmp_path, mem):
    write_local(tmp_path / "local", ORDER)
    put(mem, "/bucket", ORDER)
    on_disk = build(tmp_path / "local", "tree")
    kept_on_disk = on_disk.ledger.filter(pl.col("status") == "kept")["file"].to_list()
    for url in ("memory://bucket/tree", f"file://{tmp_path / 'local'}/tree"):
        from_url = build(tmp_path / url.split(":")[0], url)
        assert shards(from_url.output) == shards(on_disk.output)
        kept = from_url.ledger.filter(pl.col("status") == "kept")["file"].to_list()
        assert [k[k.index("tree/") :] for k in kept] == [k[k.index("tree/") :] for k in kept_on_disk]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_file_url_folder_skips_what_a_local_folder_skips(tmp_path):
    """Special files and broken links are no input (reading a FIFO would wait forever); a symlinked
    folder is followed by a glob, as Python's glob follows it."""
    write_local(tmp_path / "real", {"a.jsonl": _jsonl(ROWS[:2])})
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "d" / "pipe.jsonl")
    (tmp_path / "d" / "broken.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    (tmp_path / "d" / "linked").symlink_to(tmp_path / "real", target_is_directory=True)
    for pattern in ("d", "d/*/*.jsonl", "d/**/*.jsonl"):
        local = [str(p.relative_to(tmp_path)) for p in resolve_paths(pattern, tmp_path)]
        via_file = [
            f.url.removeprefix(f"file://{tmp_path}/") for f in resolve_paths(f"file://{tmp_path}/{pattern}", tmp_path)
        ]
        assert via_file == local, pattern
    assert [f.url for f in resolve_paths(f"file://{tmp_path}/d/*/*.jsonl", tmp_path)] == [
        f"file://{tmp_path}/d/linked/a.jsonl"
    ]


def test_files_at_a_file_systems_root_are_named_by_urls_that_name_them_again(tmp_path, mem):
    put(mem, "", {"r/a.jsonl": _jsonl(ROWS[:2])})
    for url in ("memory://", "memory://*/*.jsonl"):
        [file] = resolve_paths(url, tmp_path)
        assert file.url == "memory://r/a.jsonl"
        assert [f.url for f in resolve_paths(file.url, tmp_path)] == [file.url]


def serve_without_ranges(folder: Path) -> Iterator[str]:
    """An HTTP server of `folder` that answers every request whole (Python's own: no range requests)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture
def no_ranges(tmp_path) -> Iterator[str]:
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "a.jsonl").write_bytes(FILES["data/a.jsonl"])
    yield from serve_without_ranges(tmp_path / "served")


def test_a_server_without_range_requests_is_an_error_that_says_what_to_do(tmp_path, no_ranges):
    """Two workers read a JSON Lines file in parts (batches of 5 records), from byte ranges."""
    pytest.importorskip("aiohttp")
    (tmp_path / "b").mkdir()
    with pytest.raises(curate.FatalError) as info:
        curate.build(config(f"{no_ranges}/a.jsonl"), base_dir=tmp_path / "b", workers=2)
    message = str(info.value)
    assert f"input {no_ranges}/a.jsonl" in message, message
    assert "its HTTP server does not answer range requests" in message, message
    assert "download the file and name the copy" in message and "block_size" not in message


def test_a_folder_on_an_http_server_is_named_with_a_slash(tmp_path, no_ranges):
    pytest.importorskip("aiohttp")
    write_local(tmp_path / "served", {"tree/a/x.jsonl": _jsonl(ROWS[:2]), "tree/b.jsonl": _jsonl(ROWS[2:4])})
    assert [f.url for f in resolve_paths(f"{no_ranges}/tree/", tmp_path)] == [
        f"{no_ranges}/tree/a/x.jsonl",
        f"{no_ranges}/tree/b.jsonl",
    ]
    with pytest.raises(curate.ConfigError) as info:  # without: a page, as far as HTTP can tell
        load_config(config(f"{no_ranges}/tree"), base_dir=tmp_path)
    assert info.value.problems[0].endswith("; a folder on an HTTP server is named with a '/' at its end")


def test_a_percent_escaped_file_url_that_names_nothing_says_how_to_write_it(tmp_path):
    write_local(tmp_path / "my data", {"a b.jsonl": _jsonl(ROWS[:2])})
    url = (tmp_path / "my data" / "a b.jsonl").as_uri()  # file:///.../my%20data/a%20b.jsonl
    with pytest.raises(curate.ConfigError) as info:
        load_config(config(url), base_dir=tmp_path)
    plain = f"file://{tmp_path}/my data/a b.jsonl"
    assert info.value.problems == [
        f"sources[0].path: not found: {url!r}; file URLs are read as written, with no percent-escapes: write {plain!r}"
    ]
    assert len(load_config(config(plain), base_dir=tmp_path).sources[0].files) == 1
