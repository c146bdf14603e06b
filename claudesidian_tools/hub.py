"""Push an exported folder to a Hub dataset repository in exactly one commit.

`HfApi.upload_folder` may split a large folder into several commits (with hf-xet installed), so a
first commit's card would list shards that it does not hold. Here one `create_commit` adds every file
and deletes the files an earlier push wrote (the manifest it pushed lists them) that the folder no
longer has; any other remote file is the user's and stays.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import huggingface_hub
from huggingface_hub import CommitOperationAdd, CommitOperationDelete
from huggingface_hub.utils import EntryNotFoundError, HFValidationError, OfflineModeIsEnabled, RepositoryNotFoundError

import claudesidian_synthetic as cs
from claudesidian_tools.card import render_texts
from claudesidian_tools.interrupts import raise_if_interrupted
from claudesidian_tools.manifest import MANIFEST, config_names, read_manifest

IGNORED_PREFIXES = (".git/", ".cache/huggingface/")  # never uploaded, as in upload_folder
# One quick request without retries first: an unreachable Hub fails in this many seconds, not after
# huggingface_hub's backoff (about 20 s).
PROBE_TIMEOUT = 3.0
LOGIN = "set HF_TOKEN or run `hf auth login`"


class PushError(cs.ClaudesidianError):
    """The upload to the Hub failed (network, permissions); nothing is half-committed on the Hub."""


def commit_folder(
    folder: str,
    repo_id: str,
    paths: Sequence[str] | None = None,
    *,
    private: bool = False,
    commit_message: str = "Upload Claudesidian synthetic dataset",
    rendered: Mapping[str, str] | None = None,
    api: huggingface_hub.HfApi | None = None,
) -> tuple[str, bool]:
    """Make the dataset repository `repo_id` hold `paths` of `folder` (default: every file) in one commit,
    creating the repository if needed; a path of `rendered` is uploaded with that text instead of the
    file's. A remote file that the manifest of an earlier push lists and `paths` lacks is deleted in the
    same commit. Return the head commit's sha and whether this push made it (False when nothing changed:
    the Hub keeps its head)."""
    rendered = rendered or {}
    paths = sorted(paths) if paths is not None else _files(folder)
    _check_repo_id(repo_id, paths)
    api = api or huggingface_hub.HfApi()
    token = api.token or huggingface_hub.get_token()
    if not token:
        raise PushError(f"no Hugging Face token to push to the dataset repository {repo_id}: {LOGIN}")
    try:
        info = _probe(api, repo_id, token)
        if info is None:
            api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            info = {"sha": api.repo_info(repo_id, repo_type="dataset").sha}
        elif private and not info["private"]:
            raise PushError(
                f"the dataset repository {repo_id} exists and is public; --private does not change an existing "
                "repository: make it private in its settings on the Hub first, or push to a new repository"
            )
        head = info["sha"]
        earlier = _pushed_before(api, repo_id, head)
        stale = [path for path in api.list_repo_files(repo_id, repo_type="dataset", revision=head)
                 if path in earlier and path not in set(paths)]
        operations = [CommitOperationAdd(path, rendered[path].encode("utf-8") if path in rendered
                                         else os.path.join(folder, path)) for path in paths]
        operations += [CommitOperationDelete(path) for path in stale]
        raise_if_interrupted()  # a Ctrl-C that Python dropped: commit nothing
        commit = api.create_commit(
            repo_id, operations, commit_message=commit_message, repo_type="dataset", parent_commit=head
        )
    except PushError:
        raise
    except Exception as error:  # any client, HTTP or network error: one line, no token
        raise PushError(_explain(error, repo_id, api.endpoint, token)) from None
    return commit.oid, commit.oid != head


def _pushed_before(api: huggingface_hub.HfApi, repo_id: str, head: str) -> set[str]:
    """The files an earlier push wrote: those its manifest lists (none when the repository has no manifest)."""
    try:
        path = api.hf_hub_download(repo_id, MANIFEST, repo_type="dataset", revision=head)
    except EntryNotFoundError:
        return set()
    with open(path, encoding="utf-8") as file:
        files = json.load(file).get("files")
    return set(files) | {MANIFEST} if isinstance(files, dict) else set()


def _files(folder: str) -> list[str]:
    found = []
    for top, _, names in os.walk(folder):
        for name in names:
            path = os.path.relpath(os.path.join(top, name), folder).replace(os.sep, "/")
            if not path.startswith(IGNORED_PREFIXES):
                found.append(path)
    return sorted(found)


def _check_repo_id(repo_id: str, paths: Sequence[str]) -> None:
    try:
        huggingface_hub.utils.validate_repo_id(repo_id)
        if repo_id.count("/") != 1:
            raise HFValidationError("no namespace")
    except HFValidationError:
        raise PushError(
            f"{repo_id!r} is not a dataset repository id: give owner/name (letters, digits, '-', '_', '.'), "
            "e.g. me/claudesidian-kto"
        ) from None
    name = repo_id.split("/")[1]
    if f"{name}.py" in paths:
        raise PushError(
            f"a dataset repository named {name} that holds {name}.py is a loading script to `datasets`, which "
            f"refuses it from 4.0 on: push to another name, e.g. {repo_id}-kto"
        )


class _Unreachable(Exception):
    pass


def _probe(api: huggingface_hub.HfApi, repo_id: str, token: str) -> dict | None:
    """The repository's info, or None when it does not exist (or the token may not see it). One request
    without retries, with headers built here: huggingface_hub's own first request also fetches a registry
    for its user agent, and would take 3 s more to fail."""
    try:
        response = huggingface_hub.get_session().get(
            f"{api.endpoint}/api/datasets/{repo_id}", headers={"authorization": f"Bearer {token}"},
            timeout=PROBE_TIMEOUT,
        )
    except OfflineModeIsEnabled:
        raise
    except Exception as error:  # connection refused, DNS, timeout: whatever the HTTP client raises
        raise _Unreachable(type(error).__name__) from error
    try:
        huggingface_hub.utils.hf_raise_for_status(response)
    except RepositoryNotFoundError:
        return None
    return response.json()


def _explain(error: Exception, repo_id: str, endpoint: str, token: str) -> str:
    """One line: what went wrong with the push, and what to do."""
    where = f"the dataset repository {repo_id}"
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(error, _Unreachable):
        return f"could not reach the Hub at {endpoint} to push {where} ({error}): check the network (and HF_ENDPOINT)"
    if isinstance(error, OfflineModeIsEnabled):
        return f"offline mode is on (HF_HUB_OFFLINE): unset it to push {where}"
    if status == 401 and "Invalid credentials" in (response.headers.get("X-Error-Message") or ""):
        return f"the Hub refused your token (invalid or expired) when pushing {where}: {LOGIN} with a valid token"
    if status in (401, 403) or isinstance(error, RepositoryNotFoundError):
        return (
            f"your token may not write to {where} (HTTP {status}): use a token with write access to "
            f"{repo_id.split('/')[0]!r} ({LOGIN}), or push to your own namespace"
        )
    message = " ".join(str(error).split()).replace(token, "***")
    return f"could not push {where} ({type(error).__name__}: {message}); check the network and try again"


def push(
    folder: str,
    repo_id: str,
    *,
    private: bool = False,
    commit_message: str = "Upload Claudesidian synthetic dataset",
    api: huggingface_hub.HfApi | None = None,
) -> str:
    """Upload the export in `folder` to the dataset repository `repo_id` in one commit; return its sha.

    Only the files the export wrote (its manifest lists them) go up, the card and the recipes rendered
    again for the repository from the manifest; the folder itself is left as it is (its card still
    describes the folder), so a second push of it changes nothing."""
    if not os.path.isdir(folder):
        raise PushError(f"{folder}: no such folder; give the folder `claudesidian-synthetic export` wrote")
    manifest = read_manifest(folder)
    if manifest is None:
        raise PushError(
            f"{folder} is not a folder written by `claudesidian-synthetic export` (it has no {MANIFEST}): export "
            "into a new folder (claudesidian-synthetic export NEW_FOLDER) and push that"
        )
    _check_repo_id(repo_id, [])
    rendered = render_texts(manifest, location=repo_id, is_repo=True)
    missing = [path for path in manifest["files"] if path not in rendered and not os.path.isfile(
        os.path.join(folder, path))]
    if missing:
        raise PushError(f"{folder} lacks {', '.join(missing[:3])}, which its export wrote: export again, then push")
    sha, _ = commit_folder(folder, repo_id, list(manifest["files"]), private=private, commit_message=commit_message,
                           rendered=rendered, api=api)
    return sha


def pinned_load_lines(folder: str, repo_id: str, sha: str) -> list[str]:
    """One `load_dataset(...)` line per config of the export, pinned to `sha`."""
    return [f'load_dataset("{repo_id}", name="{name}", revision="{sha}")'
            for name in config_names(read_manifest(folder))]
