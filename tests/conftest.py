"""Shared fixtures: a private data directory, configs that accept the test data files, and a fake
Hugging Face hub on localhost."""

import dataclasses
import hashlib
import http.server
import json
import os
import re
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

from repro.core.eval_config import EVAL_CONFIG
from repro.eval.benchmarks import load_eval_config

FIXTURES = Path(__file__).parent / "fixtures"
# Benchmarks whose real files are pinned by sha256; the fixtures in their schemas are not them.
FIXTURE_BACKED = ("humaneval+", "mbpp", "mbpp+")


def pytest_addoption(parser):
    parser.addoption("--results-dir", default=os.environ.get("RA3_RESULTS_DIR"),
                     help="tests/claims: a directory of small/paper claim runs (RUN/record.json) to verify")


@pytest.fixture(autouse=True)
def private_data_dir(tmp_path_factory, monkeypatch):
    """The suite's data directory (EvalPlus ground truth, fetched files), one per test session."""
    monkeypatch.setenv("RA3_DATA_DIR", str(tmp_path_factory.getbasetemp() / "ra3-data"))


@pytest.fixture(scope="session")
def fixture_config():
    """The shipped eval config with the EvalPlus pins lifted, so fixture files in their schema load."""
    config = load_eval_config()
    unpinned = {name: dataclasses.replace(config.benchmarks[name], sha256=None) for name in FIXTURE_BACKED}
    return dataclasses.replace(config, benchmarks={**config.benchmarks, **unpinned})


@pytest.fixture(scope="session")
def fixture_config_path(tmp_path_factory):
    """The same as a YAML file, for the command line's --config."""
    data = yaml.safe_load(EVAL_CONFIG.read_text())
    for name in FIXTURE_BACKED:
        data["benchmarks"][name]["sha256"] = None
    path = tmp_path_factory.mktemp("config") / "eval.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


LFS_SUFFIXES = (".safetensors", ".parquet", ".jsonl")  # stored in LFS: the hub names them by sha256


def git_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).hexdigest()


class FakeHub(http.server.ThreadingHTTPServer):
    """The hub endpoints `snapshot_download` and `list_repo_files` use: the tree of a commit, and files."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), FakeHubHandler)
        self.repos: dict[tuple[str, str], dict[str, bytes]] = {}  # (repo, commit) -> path -> content
        self.served_instead: dict[str, bytes] = {}  # path -> bytes sent in place of the real content
        self.refusals: dict[str, tuple[int, str]] = {}  # repo -> (HTTP status, X-Error-Code) for every request
        self.downloads: list[str] = []

    @property
    def endpoint(self) -> str:
        """What HF_ENDPOINT names."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def tree(self, repo: str, commit: str) -> list[dict]:
        entries = []
        for path, content in sorted(self.repos[repo, commit].items()):
            entry = {"type": "file", "path": path, "size": len(content), "oid": git_sha1(content)}
            if path.endswith(LFS_SUFFIXES):
                entry["lfs"] = {"oid": hashlib.sha256(content).hexdigest(), "size": len(content), "pointerSize": 134}
            entries.append(entry)
        return entries


class FakeHubHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.answer(body=True)

    def do_HEAD(self):
        self.answer(body=False)

    def answer(self, body: bool):
        hub, path = self.server, unquote(urlparse(self.path).path)
        for repo, (status, code) in hub.refusals.items():  # what the hub answers for gated or missing repos
            if f"/{repo}/" in path:
                return self.send(code.encode(), {"X-Error-Code": code}, body, status=status)
        if tree := re.fullmatch(r"/api/(?:models|datasets)/([^/]+/[^/]+)/tree/([0-9a-f]{40})/?", path):
            return self.send(json.dumps(hub.tree(*tree.groups())).encode(), {}, body)
        if file := re.fullmatch(r"/(?:datasets/)?([^/]+/[^/]+)/resolve/([0-9a-f]{40})/(.+)", path):
            repo, commit, name = file.groups()
            content = hub.repos.get((repo, commit), {}).get(name)
            if content is None:
                return self.send(b"not found", {"X-Error-Code": "EntryNotFound"}, body, status=404)
            etag = hashlib.sha256(content).hexdigest() if name.endswith(LFS_SUFFIXES) else git_sha1(content)
            if body:
                hub.downloads.append(name)
            return self.send(hub.served_instead.get(name, content), {"X-Repo-Commit": commit, "ETag": f'"{etag}"'},
                             body)
        return self.send(b"not found", {}, body, status=404)

    def send(self, content: bytes, headers: dict, body: bool, status: int = 200):
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(content))}.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(content)


@pytest.fixture
def fake_hub():
    """An empty fake hub on localhost (tests add repositories: `fake_hub.repos[repo, commit] = {path: bytes}`)."""
    server = FakeHub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
