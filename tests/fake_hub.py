"""A local stand-in for the Hugging Face Hub, for `HF_ENDPOINT=http://127.0.0.1:PORT`: it answers what
`huggingface_hub` asks when it downloads from a dataset repository (the revision API and `resolve`),
serving each revision of each repository from a folder, and it records every request."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import threading
import urllib.parse


class FakeHub:
    def __init__(self):
        self.repos: dict[str, dict[str, str]] = {}  # repo id -> revision -> folder
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub._answer(self)

            def do_GET(self):
                hub._answer(self)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def add(self, repo_id: str, revision: str, folder: str) -> None:
        self.repos.setdefault(repo_id, {})[revision] = folder

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @staticmethod
    def commit(repo_id: str, revision: str) -> str:
        return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()

    def _folder(self, handler, repo_id: str, revision: str) -> str | None:
        if repo_id not in self.repos:
            self._send(handler, 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
            return None
        by_commit = {self.commit(repo_id, name): name for name in self.repos[repo_id]}
        revision = by_commit.get(revision, revision)  # a revision is a name or its commit sha
        if revision not in self.repos[repo_id]:
            self._send(handler, 404, {"error": "Invalid rev id"}, {"X-Error-Code": "RevisionNotFound"})
            return None
        return self.repos[repo_id][revision]

    @staticmethod
    def _files(folder: str) -> list[str]:
        return sorted(
            os.path.relpath(os.path.join(top, name), folder) for top, _, names in os.walk(folder) for name in names
        )

    def _answer(self, handler) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(handler.path).path)
        self.requests.append((handler.command, path))
        info = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/revision/([^/]+)", path)
        resolve = re.fullmatch(r"/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        tree = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/tree/([^/]+)", path)
        if info:
            folder = self._folder(handler, info.group(1), info.group(2))
            if folder is not None:
                self._send(handler, 200, {
                    "id": info.group(1), "sha": self.commit(info.group(1), info.group(2)), "private": False,
                    "siblings": [{"rfilename": name} for name in self._files(folder)],
                })
        elif tree:
            folder = self._folder(handler, tree.group(1), tree.group(2))
            if folder is not None:
                entries = []
                for name in self._files(folder):
                    with open(os.path.join(folder, name), "rb") as file:
                        oid = hashlib.sha1(file.read()).hexdigest()
                    entries.append({"type": "file", "path": name, "oid": oid,
                                    "size": os.path.getsize(os.path.join(folder, name))})
                self._send(handler, 200, entries)
        elif resolve:
            folder = self._folder(handler, resolve.group(1), resolve.group(2))
            if folder is None:
                return
            file_path = os.path.join(folder, resolve.group(3))
            if not os.path.isfile(file_path):
                self._send(handler, 404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
                return
            with open(file_path, "rb") as file:
                data = file.read()
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(data)))
            handler.send_header("X-Repo-Commit", self.commit(resolve.group(1), resolve.group(2)))
            handler.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            handler.end_headers()
            if handler.command == "GET":
                handler.wfile.write(data)
        else:
            self._send(handler, 404, {"error": "Not found"})

    @staticmethod
    def _send(handler, status: int, payload, headers: dict | None = None) -> None:
        body = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        if handler.command == "GET":
            handler.wfile.write(body)
