"""A small Hugging Face Hub on 127.0.0.1 for the publish/pull tests: the endpoints the real
``huggingface_hub`` client calls, answered from memory by the standard library's HTTP server.

It speaks what ``huggingface_hub`` 2.4 sends and reads (found by running the client against it
and reading its source): repo creation, repo info, settings, branches, ``validate-yaml``,
``preupload`` (upload mode per file), the git-LFS batch API with plain ``basic`` PUT uploads
(set ``HF_HUB_DISABLE_XET=1`` so the client never asks for Xet), the ndjson ``commit``, the tree
listing, ``paths-info`` and ``resolve`` (HEAD and GET, with ``X-Repo-Commit``, ``ETag``,
``Content-Length`` and byte ranges). Anything else is answered 404 and recorded in
:attr:`HubState.unknown`, so that a test notices a call this server does not know.

Not a Hub: one token is accepted, there are no organisations, no Xet and no pagination.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

#: What the real Hub puts in a new dataset repo: LFS rules for binary files.
GITATTRIBUTES = (
    b"*.tar filter=lfs diff=lfs merge=lfs -text\n*.parquet filter=lfs diff=lfs merge=lfs -text\n"
)
#: The Hub's rule of thumb for the upload mode: binary samples or large files go through LFS.
LFS_THRESHOLD = 10 * 1024 * 1024


def git_blob_sha1(data: bytes) -> str:
    """The git object id of ``data`` as a blob (what the Hub reports as ``oid`` of a file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Blob:
    """One file of a commit: its bytes and the ids the Hub reports for it."""

    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def oid(self) -> str:
        """The oid listed in the tree: the git blob id (of the pointer file, for LFS files)."""
        if not self.lfs:
            return git_blob_sha1(self.data)
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n"
        return git_blob_sha1(pointer.encode())


@dataclass
class Repo:
    """A dataset repo: branches pointing at commits, each commit a full tree."""

    repo_id: str
    private: bool
    refs: dict[str, str] = field(default_factory=dict)
    trees: dict[str, dict[str, Blob]] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)

    def resolve(self, revision: str) -> str | None:
        """The commit sha of a branch name or a commit sha, or None."""
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.trees else None


@dataclass
class HubState:
    """Everything the server holds and saw, for the tests to inspect."""

    token: str
    repos: dict[str, Repo] = field(default_factory=dict)
    lfs_store: dict[str, bytes] = field(default_factory=dict)
    #: Oids of the LFS uploads that arrived, in order (one object stored twice shows here twice).
    lfs_puts: list[str] = field(default_factory=list)
    #: ``(method, path)`` of every request, in order of arrival.
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: Requests no handler knew: ``(method, path)``.
    unknown: list[tuple[str, str]] = field(default_factory=list)
    #: Injected failures: ``{"commit": n}`` fails the n-th commit from now once (500, echoing the
    #: request's Authorization header in the error, as a careless server might);
    #: ``{"lfs": n}`` fails the n-th LFS upload from now once (400, not retried by the client).
    fail: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: int = 0

    def count(self, method: str, pattern: str) -> int:
        """How many recorded requests match ``method`` and the regex ``pattern``."""
        return sum(1 for m, p in self.requests if m == method and re.search(pattern, p))

    def new_sha(self, seed: str) -> str:
        self._seq += 1
        return hashlib.sha1(f"{seed}:{self._seq}".encode()).hexdigest()

    def should_fail(self, kind: str) -> bool:
        """Count one more request of ``kind``; True (once) when it is the one to fail."""
        with self.lock:
            if kind not in self.fail:
                return False
            self.fail[kind] -= 1
            if self.fail[kind] > 0:
                return False
            del self.fail[kind]
            return True


_API = re.compile(r"^/api/datasets/(?P<repo>[^/]+/[^/]+?)(?:/(?P<rest>.*))?$")
_RESOLVE = re.compile(r"^/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_LFS_BATCH = re.compile(r"^/datasets/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$")
_LFS_PUT = re.compile(r"^/lfs-upload/(?P<oid>[0-9a-f]{64})$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    # ----------------------------------------------------------------- plumbing
    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read :class:`HubState` instead of a log."""

    @property
    def state(self) -> HubState:
        return self.server.state

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def _body(self) -> bytes:
        """The request body, by Content-Length or chunked transfer encoding."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(
        self,
        status: int,
        body: bytes | dict[str, Any] | list[Any] = b"",
        headers: dict[str, str] | None = None,
        *,
        head: bool = False,
    ) -> None:
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, {"error": message}, headers)

    def _authorised(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.state.token}"

    def _repo(self, repo_id: str, *, write: bool = False) -> Repo | None:
        """The repo, or None after answering 401/404 (a private repo is invisible without the
        token, as on the Hub)."""
        if write and not self._authorised():
            self._error(401, "Invalid credentials in Authorization header")
            return None
        repo = self.state.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorised()):
            self._error(404, "Repository not found", "RepoNotFound")
            return None
        return repo

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        with self.state.lock:
            self.state.requests.append((method, path))
        body = self._body() if method in ("POST", "PUT") else b""
        if m := _API.match(path):
            handled = self._api(method, unquote(m["repo"]), m["rest"] or "", query, body)
        elif m := _RESOLVE.match(path):
            handled = method in ("GET", "HEAD")
            if handled:
                self._resolve(unquote(m["repo"]), unquote(m["rev"]), unquote(m["path"]), method)
        elif m := _LFS_BATCH.match(path):
            handled = method == "POST"
            if handled:
                self._lfs_batch(unquote(m["repo"]), json.loads(body))
        elif m := _LFS_PUT.match(path):
            handled = method == "PUT"
            if handled:
                self._lfs_put(m["oid"], body)
        elif path == "/api/repos/create" and method == "POST":
            self._create(json.loads(body))
            handled = True
        elif path == "/api/validate-yaml" and method == "POST":
            self._validate_yaml(json.loads(body))
            handled = True
        else:
            handled = False
        if not handled:
            with self.state.lock:
                self.state.unknown.append((method, path))
            self._error(404, f"unknown endpoint {method} {path}")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # ----------------------------------------------------------------- endpoints
    def _create(self, payload: dict[str, Any]) -> None:
        if not self._authorised():
            self._error(401, "Invalid credentials in Authorization header")
            return
        if payload.get("type") != "dataset":
            self._error(400, "this test hub holds datasets only")
            return
        repo_id = f"{payload['organization']}/{payload['name']}"
        private = payload.get("visibility", "public") == "private" or bool(payload.get("private"))
        with self.state.lock:
            if repo_id in self.state.repos:
                # The Hub names the existing repo's URL in the conflict (the client reads it).
                self._send(
                    409,
                    {"error": "You already created this dataset repo", "url": self._url(repo_id)},
                )
                return
            repo = Repo(repo_id, private)
            sha = self.state.new_sha(repo_id)
            repo.trees[sha] = {".gitattributes": Blob(GITATTRIBUTES, lfs=False)}
            repo.refs["main"] = sha
            repo.commits.append({"summary": "initial commit", "operations": []})
            self.state.repos[repo_id] = repo
        self._send(200, {"url": self._url(repo_id), "name": repo_id})

    def _url(self, repo_id: str) -> str:
        return f"{self.base}/datasets/{repo_id}"

    def _validate_yaml(self, payload: dict[str, Any]) -> None:
        content = payload.get("content", "")
        parts = content.split("---\n")
        try:
            if not content.startswith("---\n") or len(parts) < 3:
                raise ValueError("README.md has no YAML front matter")
            meta = yaml.safe_load(parts[1])
            if not isinstance(meta, dict):
                raise ValueError("front matter is not a mapping")
        except (ValueError, yaml.YAMLError) as exc:
            self._send(400, {"errors": [{"message": str(exc)}], "warnings": []})
            return
        self._send(200, {"errors": [], "warnings": []})

    def _api(
        self, method: str, repo_id: str, rest: str, query: dict[str, list[str]], body: bytes
    ) -> bool:
        """``/api/datasets/{repo}/...``; False when no endpoint matches."""
        parts = rest.split("/", 1)
        verb, arg = parts[0], unquote(parts[1]) if len(parts) > 1 else ""
        if method == "GET" and verb in ("", "revision"):
            self._info(repo_id, arg or "main", query)
        elif method == "GET" and verb == "tree":
            rev, _, sub = arg.partition("/")
            self._tree(repo_id, unquote(rev), sub, query)
        elif method == "POST" and verb == "paths-info":
            self._paths_info(repo_id, arg, body)
        elif method == "POST" and verb == "preupload":
            self._preupload(repo_id, arg, json.loads(body))
        elif method == "POST" and verb == "commit":
            self._commit(repo_id, arg, body)
        elif method == "PUT" and verb == "settings":
            self._settings(repo_id, json.loads(body))
        elif method == "POST" and verb == "branch":
            self._branch(repo_id, arg, json.loads(body or b"{}"))
        else:
            return False
        return True

    def _info(self, repo_id: str, revision: str, query: dict[str, list[str]]) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        sha = repo.resolve(revision)
        if sha is None:
            self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            return
        blobs = "blobs" in query
        siblings = []
        for path, blob in sorted(repo.trees[sha].items()):
            entry: dict[str, Any] = {"rfilename": path}
            if blobs:
                entry.update(size=len(blob.data), blobId=blob.oid)
                if blob.lfs:
                    entry["lfs"] = {
                        "size": len(blob.data),
                        "sha256": blob.sha256,
                        "pointerSize": 130,
                    }
            siblings.append(entry)
        self._send(
            200,
            {
                "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "author": repo_id.split("/")[0],
                "sha": sha,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "lastModified": "2026-01-01T00:00:00.000Z",
                "createdAt": "2026-01-01T00:00:00.000Z",
                "tags": [],
                "siblings": siblings,
            },
        )

    def _entry(self, path: str, blob: Blob) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "type": "file",
            "path": path,
            "size": len(blob.data),
            "oid": blob.oid,
        }
        if blob.lfs:
            entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": 130}
        return entry

    def _tree(self, repo_id: str, revision: str, sub: str, query: dict[str, list[str]]) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        sha = repo.resolve(revision)
        if sha is None:
            self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            return
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        prefix = f"{sub.strip('/')}/" if sub.strip("/") else ""
        files, dirs = [], set()
        for path, blob in sorted(repo.trees[sha].items()):
            if not path.startswith(prefix):
                continue
            rel = path[len(prefix) :].split("/")
            for depth in range(1, len(rel)):
                if depth == 1 or recursive:
                    dirs.add(prefix + "/".join(rel[:depth]))
            if len(rel) == 1 or recursive:
                files.append(self._entry(path, blob))
        if prefix and not files and not dirs:
            self._error(404, f"{sub} does not exist", "EntryNotFound")
            return
        folders = [
            {"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest()}
            for d in sorted(dirs)
        ]
        self._send(200, folders + files)

    def _paths_info(self, repo_id: str, revision: str, body: bytes) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        sha = repo.resolve(revision)
        if sha is None:
            self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            return
        form = parse_qs(body.decode())
        paths = form.get("paths", [])
        tree = repo.trees[sha]
        self._send(200, [self._entry(p, tree[p]) for p in paths if p in tree])

    def _preupload(self, repo_id: str, revision: str, payload: dict[str, Any]) -> None:
        repo = self._repo(repo_id, write=True)
        if repo is None:
            return
        sha = repo.resolve(revision)
        tree = repo.trees[sha] if sha else {}
        files = []
        for f in payload["files"]:
            sample = base64.b64decode(f["sample"])
            lfs = b"\0" in sample or f["size"] > LFS_THRESHOLD
            have = tree.get(f["path"])
            oid = None if have is None else (have.sha256 if have.lfs else have.oid)
            files.append(
                {
                    "path": f["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": oid,
                }
            )
        self._send(200, {"files": files, "commitOid": sha})

    def _lfs_batch(self, repo_id: str, payload: dict[str, Any]) -> None:
        if self._repo(repo_id, write=True) is None:
            return
        objects = []
        for obj in payload["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.state.lfs_store:
                entry["authenticated"] = True
                entry["actions"] = {"upload": {"href": f"{self.base}/lfs-upload/{obj['oid']}"}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def _lfs_put(self, oid: str, body: bytes) -> None:
        if self.state.should_fail("lfs"):
            self._error(400, "injected failure: LFS upload rejected")
            return
        if hashlib.sha256(body).hexdigest() != oid:
            self._error(400, "LFS object does not match its oid")
            return
        with self.state.lock:
            self.state.lfs_store[oid] = body
            self.state.lfs_puts.append(oid)
        self._send(200, b"")

    def _commit(self, repo_id: str, revision: str, body: bytes) -> None:
        repo = self._repo(repo_id, write=True)
        if repo is None:
            return
        if self.state.should_fail("commit"):
            # A careless server that echoes the request's credentials: the client must not pass
            # them on to the user.
            self._error(500, f"injected failure (request had {self.headers.get('Authorization')})")
            return
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = lines[0]["value"]
        with self.state.lock:
            parent = repo.resolve(revision)
            if parent is None:
                self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
                return
            tree = dict(repo.trees[parent])
            for op in lines[1:]:
                key, value = op["key"], op["value"]
                if key == "file":
                    tree[value["path"]] = Blob(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    data = self.state.lfs_store.get(value["oid"])
                    if data is None:
                        self._error(422, f"LFS object {value['oid']} was never uploaded")
                        return
                    tree[value["path"]] = Blob(data, lfs=True)
                elif key == "deletedFile":
                    tree.pop(value["path"], None)
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    tree = {p: b for p, b in tree.items() if not p.startswith(folder)}
                else:
                    self._error(400, f"unknown commit operation {key}")
                    return
            sha = self.state.new_sha(repo_id)
            repo.trees[sha] = tree
            repo.refs[revision] = sha
            repo.commits.append({**header, "operations": lines[1:]})
        self._send(
            200,
            {
                "success": True,
                "commitOid": sha,
                "commitUrl": f"{self.base}/datasets/{repo_id}/commit/{sha}",
            },
        )

    def _settings(self, repo_id: str, payload: dict[str, Any]) -> None:
        repo = self._repo(repo_id, write=True)
        if repo is None:
            return
        if "visibility" in payload:
            repo.private = payload["visibility"] == "private"
        if "private" in payload:
            repo.private = bool(payload["private"])
        self._send(200, {})

    def _branch(self, repo_id: str, branch: str, payload: dict[str, Any]) -> None:
        repo = self._repo(repo_id, write=True)
        if repo is None:
            return
        if branch in repo.refs:
            self._error(409, f"Reference already exists: {branch}")
            return
        start = repo.resolve(payload.get("startingPoint") or "main")
        if start is None:
            self._error(404, "Invalid starting point", "RevisionNotFound")
            return
        repo.refs[branch] = start
        self._send(200, {})

    def _resolve(self, repo_id: str, revision: str, path: str, method: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        sha = repo.resolve(revision)
        if sha is None:
            self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            return
        blob = repo.trees[sha].get(path)
        if blob is None:
            self._send(
                404,
                {"error": "Entry not found"},
                {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha},
            )
            return
        etag = blob.sha256 if blob.lfs else blob.oid
        headers = {
            "X-Repo-Commit": sha,
            "ETag": f'"{etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if blob.lfs:
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(len(blob.data))
        data, status = blob.data, 200
        if method == "GET" and (
            rng := re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        ):
            start = int(rng[1])
            stop = int(rng[2]) + 1 if rng[2] else len(data)
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
            data, status = data[start:stop], 206
        headers["Content-Length"] = str(len(data))
        self._send(status, data, headers, head=method == "HEAD")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: HubState, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.state = state


class HubServer:
    """The test hub, serving on a free port of 127.0.0.1 in a thread until :meth:`close`."""

    def __init__(self, token: str, port: int = 0) -> None:
        self.state = HubState(token=token)
        self._server = _Server(self.state, port)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of ``repo_id`` at ``revision``, by path."""
        repo = self.state.repos[repo_id]
        sha = repo.resolve(revision)
        assert sha is not None, f"no revision {revision}"
        return {p: b.data for p, b in repo.trees[sha].items()}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def main() -> None:
    """``python -m tests.hub_server --port 8765 --token hf_...``: serve until interrupted (to try
    ``mvdata publish`` / ``pull`` by hand against ``HF_ENDPOINT=http://127.0.0.1:8765``)."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--token", required=True, help="the one token the server accepts")
    args = ap.parse_args()
    server = HubServer(args.token, args.port)
    print(f"test Hub on {server.url} (Ctrl-C stops it; everything is lost)", flush=True)
    try:
        server._thread.join()
    except KeyboardInterrupt:
        server.close()


if __name__ == "__main__":
    main()
