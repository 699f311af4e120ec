"""`s3://` sources through s3fs against a local S3 server (moto's), as the README shows them: an
S3-compatible endpoint in `storage_options`, the same shards as local files with 1 and 2 workers, version
fields (ETag) instead of hashing, edits picked up, misspelled options and a missing bucket reported.

Skipped when s3fs or moto is not installed (the dev extra installs them: `s3fs`, `moto[s3]`, and `flask`,
`flask-cors` for moto's server). Neither is a dependency of curate; the server runs on this machine."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest

import curate
from curate.ingest.files import resolve_paths
from curate.ingest.remote import fingerprint
from tests.test_remote_inputs import FILES, config, shards, write_local

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("s3fs") is None or importlib.util.find_spec("moto") is None,
    reason="s3fs and moto (with flask, flask-cors for its server) are not installed",
)

CREDENTIALS = {"key": "testing", "secret": "testing"}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A moto S3 server on a free local port, for this module."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(endpoint: str, request: pytest.FixtureRequest) -> Iterator[tuple[Any, str]]:
    """(s3fs file system, bucket name): a new bucket holding `FILES`, emptied and removed after the test."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=endpoint, **CREDENTIALS, skip_instance_cache=True)
    name = request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:50]
    fs.mkdir(name)
    for path, data in FILES.items():
        fs.pipe(f"{name}/{path}", data)
    fs.invalidate_cache()
    yield fs, name
    fs.rm(name, recursive=True)


def s3_config(url: str, server: str, **options: Any) -> dict[str, Any]:
    raw = config(url)
    raw["sources"][0]["storage_options"] = {"endpoint_url": server, **CREDENTIALS, **options}
    return raw


@pytest.mark.parametrize("workers", [1, 2])
def test_an_s3_folder_builds_the_same_shards_as_local_files(tmp_path, endpoint, bucket, workers):
    _, name = bucket
    write_local(tmp_path / "local", FILES)
    (tmp_path / "remote").mkdir()
    on_disk = curate.build(config("data"), base_dir=tmp_path / "local")
    from_s3 = curate.build(s3_config(f"s3://{name}/data", endpoint), base_dir=tmp_path / "remote", workers=workers)
    assert shards(on_disk.output) and shards(from_s3.output) == shards(on_disk.output)
    assert set(from_s3.ledger["file"]) == {f"s3://{name}/data/{n}" for n in ("a.jsonl", "b.jsonl.zst", "c.parquet")}


def test_s3_files_are_stamped_by_their_etag_and_edits_are_picked_up(tmp_path, endpoint, bucket):
    fs, name = bucket
    options = {"endpoint_url": endpoint, **CREDENTIALS}
    [file] = resolve_paths(f"s3://{name}/data/a.jsonl", tmp_path, storage_options=options)
    key = fingerprint(file)
    assert "ETag=" in key and "sha256=" not in key  # not read to fingerprint it
    first = curate.build(s3_config(f"s3://{name}/data/a.jsonl", endpoint), base_dir=tmp_path)
    again = curate.build(s3_config(f"s3://{name}/data/a.jsonl", endpoint), base_dir=tmp_path)
    assert again.run["cached_passes"] and shards(again.output) == shards(first.output)
    old = fs.cat(f"{name}/data/a.jsonl")
    new = old.replace(b'"answer": "', b'"answer":"', 1) + b" "  # the same size, other bytes: only the ETag tells
    assert len(new) == len(old) and new != old
    fs.pipe(f"{name}/data/a.jsonl", new)
    edited = curate.build(s3_config(f"s3://{name}/data/a.jsonl", endpoint), base_dir=tmp_path)
    assert edited.run["cached_passes"] == []


def test_s3_config_errors_name_the_source(tmp_path, endpoint, bucket):
    _, name = bucket
    with pytest.raises(curate.ConfigError) as info:  # the README's example of a misspelled option
        curate.build(s3_config(f"s3://{name}/data", endpoint, endpoint=endpoint), base_dir=tmp_path)
    expected = "sources[0].storage_options.endpoint: not an option of S3FileSystem, did you mean 'endpoint_url'"
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems
    with pytest.raises(curate.ConfigError) as info:
        curate.build(s3_config("s3://no-such-bucket/data", endpoint), base_dir=tmp_path)
    [problem] = info.value.problems
    assert problem.startswith("sources[0].path: ") and "no-such-bucket" in problem, problem


def test_the_readme_example_reads_from_an_s3_compatible_store(tmp_path, endpoint, bucket):
    """The README's TOML, with the endpoint of the local server: keys from the environment."""
    _, name = bucket
    toml = tmp_path / "mixture.toml"
    toml.write_text(
        f"""[pipeline]
name = "s3"
output = "out"

[[sources]]
name = "gsm"
path = "s3://{name}/data/*.jsonl"
format = "prompt_response"
fields = {{ prompt = "question", response = "answer" }}
storage_options = {{ endpoint_url = "{endpoint}" }}
""",
        encoding="utf-8",
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        result = curate.build(toml)
    assert result.manifest["sources"]["gsm"]["records_kept"] == 9


def test_access_denied_is_not_reported_as_not_found(tmp_path, endpoint, bucket):
    _, name = bucket
    raw = config(f"s3://{name}/data/a.jsonl")
    raw["sources"][0]["storage_options"] = {"endpoint_url": endpoint, "anon": True}  # the server refuses: 403
    with pytest.raises(curate.ConfigError) as info:
        curate.build(raw, base_dir=tmp_path)
    [problem] = info.value.problems
    assert problem.startswith(f"sources[0].path: cannot list 's3://{name}/data/a.jsonl': "), problem
    assert "not found" not in problem and ("Forbidden" in problem or "denied" in problem.lower()), problem


def test_a_second_build_in_one_process_sees_what_changed_in_the_bucket(tmp_path, endpoint, bucket):
    """fsspec keeps one file system per options in a process, with its listings: a notebook that builds
    again after files were added or rewritten must not get the old listing (files missed, or stale
    ETags that the store no longer serves)."""
    fs, name = bucket
    for blank_lines, path in enumerate(("data/*.jsonl", "data"), start=1):
        first = curate.build(s3_config(f"s3://{name}/{path}", endpoint), base_dir=tmp_path)
        fs.pipe(f"{name}/data/new.jsonl", FILES["data/a.jsonl"])
        fs.pipe(f"{name}/data/a.jsonl", FILES["data/a.jsonl"] + b"\n" * blank_lines)  # the same records, a new ETag
        again = curate.build(s3_config(f"s3://{name}/{path}", endpoint), base_dir=tmp_path)
        assert f"s3://{name}/data/new.jsonl" in set(again.ledger["file"])
        assert again.manifest["sources"]["gsm"]["records_in"] == first.manifest["sources"]["gsm"]["records_in"] + 9
        fs.rm(f"{name}/data/new.jsonl")
