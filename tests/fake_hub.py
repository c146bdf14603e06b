"""A local stand-in for the Hugging Face Hub, for `HF_ENDPOINT=http://127.0.0.1:PORT`.

It answers, for dataset repositories, the requests that `huggingface_hub` and `datasets` really send
to download and to push: repository info, tree and paths-info listings, `resolve` (with ranges), repo
creation, preupload and the NDJSON commit (every file "regular", so no LFS or Xet protocol), whoami.
Each repository is a set of immutable commits (path -> blob, a parent, a message, a sha) and branches;
a revision is a branch or a full commit sha. Writes need a valid bearer token, private repositories
are invisible without one, and errors carry the Hub's `X-Error-Code` headers so the clients raise their
usual errors. Every request is recorded in `requests`; one the fake cannot answer is recorded in
`unanswered` too (tests assert it stays empty). With `storage=DIR` the repositories live in DIR and
another process can serve them again. Standard library only: it runs under every `datasets` of the CI
matrix.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import http.server
import json
import os
import re
import tempfile
import threading
import time
import traceback
import urllib.parse
from collections.abc import Collection, Mapping

# What the Hub's first commit of a new repository holds (abridged).
GITATTRIBUTES = b"*.arrow filter=lfs diff=lfs merge=lfs -text\n*.parquet filter=lfs diff=lfs merge=lfs -text\n"
PAGE_SIZE, EXPANDED_PAGE_SIZE = 1000, 50  # the Hub's tree pagination
REPO = r"(?P<repo>[^/]+/[^/]+)"
ROUTES = [  # (methods, path pattern on the raw path, handler name)
    ({"GET"}, r"/api/whoami-v2", "whoami"),
    ({"GET"}, r"/api/agent-harnesses", "agent_harnesses"),
    ({"POST"}, r"/api/repos/create", "create"),
    ({"POST"}, r"/api/validate-yaml", "validate_yaml"),
    ({"GET"}, rf"/api/datasets/{REPO}(?:/revision/(?P<rev>[^/]+))?", "info"),
    ({"GET"}, rf"/api/datasets/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", "tree"),
    ({"POST"}, rf"/api/datasets/{REPO}/paths-info/(?P<rev>[^/]+)", "paths_info"),
    ({"POST"}, rf"/api/datasets/{REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
    ({"POST"}, rf"/api/datasets/{REPO}/commit/(?P<rev>[^/]+)", "commit"),
    ({"GET", "HEAD"}, rf"/datasets/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
]


def git_oid(data: bytes) -> str:
    """The git blob sha1, as the Hub reports a regular file's oid (and huggingface_hub compares it)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True)
class Commit:
    sha: str
    parent: str | None
    message: str
    date: str
    files: dict  # path -> blob oid


@dataclasses.dataclass
class Repo:
    private: bool
    created: str
    branches: dict = dataclasses.field(default_factory=dict)  # name -> commit sha
    commits: dict = dataclasses.field(default_factory=dict)  # sha -> Commit


class Reply(Exception):
    """An error answer, as the Hub gives it: a status, `X-Error-Code`, `X-Error-Message`, JSON body."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class Unanswered(Exception):
    """A request this fake does not implement."""


class FakeHub:
    """The fake Hub, serving until `close()`. `tokens` maps each valid token to its user; a token in
    `read_only` may read but not write. A user writes only to repositories of its own namespace."""

    def __init__(self, tokens: Mapping[str, str] | None = None, *, read_only: Collection[str] = (),
                 storage: str | None = None):
        self.tokens = dict(tokens or {})
        self.read_only = set(read_only)
        self.storage = storage
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.unanswered: list[tuple[str, str]] = []
        self.delay = 0.0  # seconds before each answer: a slow but working network
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.RLock()
        if storage:
            os.makedirs(os.path.join(storage, "blobs"), exist_ok=True)
            self._load()
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the clients expect from the Hub

            def log_message(self, *args):
                pass

            def do_GET(self):
                hub._handle(self)

            do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    # --- what tests use ------------------------------------------------------------------------

    def add(self, repo_id: str, revision: str, folder: str) -> str:
        """Commit every file of `folder` as branch `revision` of the public `repo_id`; return the sha."""
        files = {}
        for top, _, names in os.walk(folder):
            for name in names:
                path = os.path.join(top, name)
                with open(path, "rb") as file:
                    files[os.path.relpath(path, folder).replace(os.sep, "/")] = self._put_blob(file.read())
        with self._lock:
            repo = self.repos.setdefault(repo_id, Repo(private=False, created=_now()))
            parent = repo.branches.get(revision, repo.branches.get("main"))
            return self._new_commit(repo, revision, parent, files, f"Add {os.path.basename(folder)}")

    def head(self, repo_id: str, branch: str = "main") -> str:
        return self.repos[repo_id].branches[branch]

    def commits(self, repo_id: str, revision: str = "main") -> list[Commit]:
        """The history of `revision`, newest first."""
        repo = self.repos[repo_id]
        sha, history = repo.branches.get(revision, revision), []
        while sha is not None:
            history.append(repo.commits[sha])
            sha = repo.commits[sha].parent
        return history

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return {path: self._blob(oid) for path, oid in self.commits(repo_id, revision)[0].files.items()}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- storage -------------------------------------------------------------------------------

    def _put_blob(self, data: bytes) -> str:
        oid = git_oid(data)
        if self.storage:
            path = os.path.join(self.storage, "blobs", oid)
            if not os.path.exists(path):
                self._write_atomically(path, data)
        else:
            self._blobs[oid] = data
        return oid

    def _blob(self, oid: str) -> bytes:
        if not self.storage:
            return self._blobs[oid]
        with open(os.path.join(self.storage, "blobs", oid), "rb") as file:
            return file.read()

    def _new_commit(self, repo: Repo, branch: str, parent: str | None, files: dict, message: str) -> str:
        date = _now()
        sha = hashlib.sha1(json.dumps([parent, message, date, sorted(files.items())]).encode()).hexdigest()
        repo.commits[sha] = Commit(sha, parent, message, date, dict(files))
        repo.branches[branch] = sha
        self._save()
        return sha

    def _save(self) -> None:
        if self.storage:
            state = {
                repo_id: {**dataclasses.asdict(repo), "commits": [dataclasses.asdict(c) for c in repo.commits.values()]}
                for repo_id, repo in self.repos.items()
            }
            self._write_atomically(os.path.join(self.storage, "repos.json"), json.dumps(state, indent=1).encode())

    def _load(self) -> None:
        path = os.path.join(self.storage, "repos.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as file:
                for repo_id, state in json.load(file).items():
                    commits = {item["sha"]: Commit(**item) for item in state.pop("commits")}
                    self.repos[repo_id] = Repo(**state, commits=commits)

    @staticmethod
    def _write_atomically(path: str, data: bytes) -> None:
        handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path))
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)

    # --- HTTP ----------------------------------------------------------------------------------

    def _handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(handler.path)
        method, shown = handler.command, urllib.parse.unquote(url.path)
        self.requests.append((method, shown))
        time.sleep(self.delay)
        body = self._read_body(handler)
        try:
            for methods, pattern, name in ROUTES:
                match = re.fullmatch(pattern, url.path)
                if match and method in methods:
                    groups = {key: urllib.parse.unquote(value) for key, value in match.groupdict().items() if value}
                    query = urllib.parse.parse_qs(url.query)
                    getattr(self, "_api_" + name)(handler, body=body, query=query, **groups)
                    return
            raise Unanswered(f"{method} {shown}")
        except Reply as reply:
            headers = {"X-Error-Message": reply.message, **({"X-Error-Code": reply.code} if reply.code else {})}
            self._send(handler, reply.status, {"error": reply.message}, headers)
        except Unanswered as error:
            self.unanswered.append((method, shown))
            self._send(handler, 404, {"error": f"not answered by the fake Hub: {error}"},
                       {"X-Error-Code": "EntryNotFound", "X-Error-Message": "not answered by the fake Hub"})
        except Exception:  # a bug in the fake: fail fast (501 is not retried) and visibly
            self.unanswered.append((method, shown))
            traceback.print_exc()
            self._send(handler, 501, {"error": "fake Hub error"})

    @staticmethod
    def _read_body(handler) -> bytes:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(handler.rfile.readline().split(b";")[0], 16)
                chunks.append(handler.rfile.read(size))
                handler.rfile.readline()
                if size == 0:
                    return b"".join(chunks)
        return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))

    @staticmethod
    def _send(handler, status: int, payload, headers: Mapping[str, str] | None = None, raw: bytes | None = None
              ) -> None:
        body = raw if raw is not None else json.dumps(payload).encode()
        handler.send_response(status)
        if raw is None:
            handler.send_header("Content-Type", "application/json; charset=utf-8")
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    # --- authentication and lookups ------------------------------------------------------------

    def _auth(self, handler) -> tuple[str | None, bool]:
        """The user of the request's token and whether it may write; an invalid token is refused."""
        header = handler.headers.get("Authorization")
        if not header:
            return None, False
        token = header[len("Bearer "):].strip() if header.startswith("Bearer ") else header
        if token not in self.tokens:
            raise Reply(401, "Invalid credentials in Authorization header")
        return self.tokens[token], token not in self.read_only

    def _readable(self, handler, repo_id: str) -> Repo:
        user, _ = self._auth(handler)
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and user != repo_id.split("/")[0]):
            # The Hub does not tell a missing repository from a private one: 401 anonymous, 404 signed in.
            raise Reply(401 if user is None else 404, "Repository not found", "RepoNotFound")
        return repo

    def _writable(self, handler, repo_id: str) -> Repo:
        user, may_write = self._auth(handler)
        repo = self._readable(handler, repo_id)
        if user is None:
            raise Reply(401, "You must be authenticated to write to this repository")
        if not may_write or user != repo_id.split("/")[0]:
            raise Reply(403, f"You don't have the rights to write to the dataset {repo_id}")
        return repo

    @staticmethod
    def _commit_at(repo: Repo, rev: str, branch_only: bool = False) -> Commit:
        if rev in repo.branches:
            return repo.commits[repo.branches[rev]]
        if rev in repo.commits and not branch_only:
            return repo.commits[rev]
        if rev in repo.commits:
            raise Reply(400, f"Invalid rev id: {rev} is not a branch; commits go to a branch")
        raise Reply(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def _entry(self, repo: Repo, commit: Commit, path: str, expand: bool) -> dict:
        """A tree entry (file or directory) as the tree and paths-info APIs give it."""
        if path in commit.files:
            entry = {"type": "file", "oid": commit.files[path], "size": len(self._blob(commit.files[path])),
                     "path": path}
            if expand:
                entry["securityFileStatus"] = {"status": "safe", "avScan": {"virusFound": False, "virusNames": None},
                                               "pickleImportScan": None}
        else:
            under = sorted(item for item in commit.files.items() if item[0].startswith(path + "/"))
            entry = {"type": "directory", "oid": hashlib.sha1(json.dumps(under).encode()).hexdigest(), "size": 0,
                     "path": path}
        if expand:
            entry["lastCommit"] = self._last_commit(repo, commit, path)
        return entry

    def _last_commit(self, repo: Repo, commit: Commit, path: str) -> dict:
        def state(item: Commit):
            return item.files.get(path), sorted(kv for kv in item.files.items() if kv[0].startswith(path + "/"))

        while commit.parent is not None and state(repo.commits[commit.parent]) == state(commit):
            commit = repo.commits[commit.parent]
        return {"id": commit.sha, "title": commit.message, "date": commit.date}

    @staticmethod
    def _flag(query: dict, name: str) -> bool:
        return query.get(name, ["false"])[-1].lower() in ("1", "true")

    # --- the API -------------------------------------------------------------------------------

    def _api_whoami(self, handler, **_) -> None:
        user, may_write = self._auth(handler)
        if user is None:
            raise Reply(401, "Invalid username or password.")
        role = "write" if may_write else "read"
        self._send(handler, 200, {"type": "user", "id": hashlib.sha1(user.encode()).hexdigest()[:24], "name": user,
                                  "fullname": user, "isPro": False, "orgs": [], "auth": {
                                      "type": "access_token", "accessToken": {"displayName": "fake", "role": role}}})

    def _api_agent_harnesses(self, handler, **_) -> None:
        """huggingface_hub 1.x+ asks once a day which AI agents to detect (telemetry): none here."""
        self._send(handler, 200, {"standardEnvVars": [], "harnesses": {}})

    def _api_create(self, handler, body: bytes, **_) -> None:
        payload = json.loads(body)
        if payload.get("type") != "dataset":
            raise Unanswered(f"create a {payload.get('type') or 'model'} repository (only datasets here)")
        user, may_write = self._auth(handler)
        if user is None:
            raise Reply(401, "You must be authenticated to create a repository")
        owner = payload.get("organization") or user
        repo_id = f"{owner}/{payload['name']}"
        if not re.fullmatch(r"[\w.-]{1,96}", payload["name"]):
            raise Reply(400, f"Invalid repository name {payload['name']!r}")
        with self._lock:
            if repo_id in self.repos:
                raise Reply(409, "You already created this dataset repo")
            if owner != user or not may_write:
                raise Reply(403, f'You don\'t have the rights to create a dataset under the namespace "{owner}"')
            private = payload.get("private", payload.get("visibility") == "private")
            repo = self.repos[repo_id] = Repo(private=bool(private), created=_now())
            self._new_commit(repo, "main", None, {".gitattributes": self._put_blob(GITATTRIBUTES)}, "initial commit")
        self._send(handler, 200, {"url": f"{self.endpoint}/datasets/{repo_id}", "name": repo_id, "id": repo_id})

    def _api_validate_yaml(self, handler, body: bytes, **_) -> None:
        content = json.loads(body)["content"]
        if content.startswith("---\n") and "\n---\n" not in content[3:]:
            raise Reply(400, "Invalid metadata: the YAML block is not closed")
        self._send(handler, 200, {"errors": [], "warnings": []})

    def _api_info(self, handler, repo: str, query: dict, rev: str = "main", **_) -> None:
        found = self._readable(handler, repo)
        commit = self._commit_at(found, rev)
        blobs = self._flag(query, "blobs")
        siblings = [{"rfilename": path, **({"size": len(self._blob(oid)), "blobId": oid} if blobs else {})}
                    for path, oid in sorted(commit.files.items())]
        self._send(handler, 200, {
            "_id": hashlib.sha1(repo.encode()).hexdigest()[:24], "id": repo, "author": repo.split("/")[0],
            "sha": commit.sha, "lastModified": commit.date, "createdAt": found.created, "private": found.private,
            "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings,
        })

    def _api_tree(self, handler, repo: str, rev: str, query: dict, path: str = "", **_) -> None:
        found = self._readable(handler, repo)
        commit = self._commit_at(found, rev)
        path = path.strip("/")
        prefix = path + "/" if path else ""
        if path and (path in commit.files or not any(name.startswith(prefix) for name in commit.files)):
            raise Reply(404, f"{path} does not exist on {rev!r} (or is not a folder)", "EntryNotFound")
        recursive, expand = self._flag(query, "recursive"), self._flag(query, "expand")
        paths = set()
        for name in commit.files:
            if name.startswith(prefix):
                parts = name[len(prefix):].split("/")
                for depth in range(1, len(parts) + 1 if recursive else 2):
                    paths.add(prefix + "/".join(parts[:depth]))
        paths = sorted(paths)
        start = int(query.get("cursor", ["0"])[0])
        size = EXPANDED_PAGE_SIZE if expand else PAGE_SIZE
        headers = {}
        if start + size < len(paths):
            raw_path = urllib.parse.urlsplit(handler.path).path
            next_query = urllib.parse.urlencode({"recursive": str(recursive), "expand": str(expand),
                                                 "cursor": start + size})
            headers["Link"] = f'<{self.endpoint}{raw_path}?{next_query}>; rel="next"'
        self._send(handler, 200, [self._entry(found, commit, item, expand) for item in paths[start:start + size]],
                   headers)

    def _api_paths_info(self, handler, repo: str, rev: str, body: bytes, **_) -> None:
        found = self._readable(handler, repo)
        commit = self._commit_at(found, rev)
        if handler.headers.get("Content-Type", "").startswith("application/json"):
            form = json.loads(body)
            paths, expand = form.get("paths", []), bool(form.get("expand"))
        else:
            form = urllib.parse.parse_qs(body.decode())
            paths, expand = form.get("paths", []), self._flag(form, "expand")
        wanted = [path.strip("/") for path in paths]
        existing = [path for path in wanted
                    if path in commit.files or any(name.startswith(path + "/") for name in commit.files)]
        self._send(handler, 200, [self._entry(found, commit, path, expand) for path in existing])

    def _api_resolve(self, handler, repo: str, rev: str, path: str, **_) -> None:
        found = self._readable(handler, repo)
        commit = self._commit_at(found, rev)
        if path not in commit.files:
            raise Reply(404, f"{path} does not exist on {rev!r}", "EntryNotFound")
        data = self._blob(commit.files[path])
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{commit.files[path]}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        wanted = re.fullmatch(r"bytes=(\d*)-(\d*)", handler.headers.get("Range", ""))
        if wanted and handler.command == "GET":
            first, last = wanted.groups()
            start = len(data) - int(last) if not first else int(first)
            stop = len(data) if not first or not last else min(int(last) + 1, len(data))
            if start >= len(data) or start >= stop:
                raise Reply(416, f"Range {handler.headers['Range']} not satisfiable for {len(data)} bytes")
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
            self._send(handler, 206, None, headers, raw=data[start:stop])
        else:
            self._send(handler, 200, None, headers, raw=data)

    def _api_preupload(self, handler, repo: str, rev: str, body: bytes, query: dict, **_) -> None:
        if query.get("create_pr"):
            raise Unanswered("preupload for a pull request")
        found = self._writable(handler, repo)
        commit = self._commit_at(found, rev, branch_only=True)
        files = [{"path": item["path"], "uploadMode": "regular", "shouldIgnore": False,
                  "oid": commit.files.get(item["path"])} for item in json.loads(body)["files"]]
        self._send(handler, 200, {"files": files, "commitOid": commit.sha})

    def _api_commit(self, handler, repo: str, rev: str, body: bytes, query: dict, **_) -> None:
        if query.get("create_pr"):
            raise Unanswered("a commit as a pull request")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        with self._lock:
            found = self._writable(handler, repo)
            head = self._commit_at(found, rev, branch_only=True)
            header = next((line["value"] for line in lines if line["key"] == "header"), {})
            if header.get("parentCommit") not in (None, head.sha):
                raise Reply(412, "A commit has happened since. Please refresh and try again.")
            files = dict(head.files)
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "file":
                    content = value["content"]
                    data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                    files[value["path"]] = self._put_blob(data)
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise Reply(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    gone = [name for name in files if name.startswith(prefix)]
                    if not gone:
                        raise Reply(404, f"A folder with this name doesn't exist: {value['path']}", "EntryNotFound")
                    for name in gone:
                        del files[name]
                elif key != "header":
                    raise Unanswered(f"commit operation {key!r} (every file is preuploaded as regular)")
            sha = self._new_commit(found, rev, head.sha, files, header.get("summary", ""))
        url = f"{self.endpoint}/datasets/{repo}/commit/{sha}"
        self._send(handler, 200, {"success": True, "commitOid": sha, "commitUrl": url, "hookOutput": ""})
