"""A real git server on 127.0.0.1 for the sandbox demo and the test suite.

`git daemon` serves bare repositories under a base folder over git://, pushes included, and
serves any commit by id with partial-clone filters, as the big hosting services do. Commits are
written with git's plumbing straight into the bare repositories (a private index file per
commit, no work tree to keep in sync), so a demo or a test can move branches while Kapsa polls.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from kapsa.errors import SourceError
from kapsa.lifecycle import Service

HEADS = "refs/heads/"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_START_ATTEMPTS = 5
_START_TIMEOUT = 10.0
_AUTHOR = {
    "GIT_AUTHOR_NAME": "Kapsa Sandbox",
    "GIT_AUTHOR_EMAIL": "sandbox@kapsa.invalid",
    "GIT_COMMITTER_NAME": "Kapsa Sandbox",
    "GIT_COMMITTER_EMAIL": "sandbox@kapsa.invalid",
}
#: What upload-pack needs to answer Kapsa's shallow, tree-only fetches of a commit by id.
_SERVER_CONFIG = {
    "uploadpack.allowAnySHA1InWant": "true",
    "uploadpack.allowFilter": "true",
    "daemon.receivepack": "true",
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class GitServer(Service):
    """`git daemon` over `base_dir`, listening on 127.0.0.1 only."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.repos_dir = base_dir / "repos"
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(base_dir),
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_COUNT": str(len(_SERVER_CONFIG)),
            **_AUTHOR,
        }
        for index, (key, value) in enumerate(_SERVER_CONFIG.items()):
            self._env[f"GIT_CONFIG_KEY_{index}"] = key
            self._env[f"GIT_CONFIG_VALUE_{index}"] = value

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> GitServer:
        """Start the daemon on a free port; a port taken in between is retried with another."""
        if self._process is not None:
            return self
        self.repos_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.base_dir / "daemon.log"
        for attempt in range(_START_ATTEMPTS):
            # A restarted server keeps its port, so the URLs Projects hold stay valid.
            port = self.port if self.port is not None and attempt == 0 else _free_port()
            # A file, not a pipe: a pipe nobody reads would block the daemon once full.
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    [
                        "git",
                        "daemon",
                        "--listen=127.0.0.1",
                        f"--port={port}",
                        f"--base-path={self.repos_dir}",
                        "--export-all",
                        "--enable=receive-pack",
                        "--reuseaddr",
                        "--informative-errors",
                        str(self.repos_dir),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    env=self._env,
                    start_new_session=True,
                )
            deadline = time.monotonic() + _START_TIMEOUT
            while process.poll() is None and time.monotonic() < deadline:
                if _accepts(port):
                    self._process, self.port = process, port
                    return self
                time.sleep(0.05)
            _kill_group(process)
        output = log_path.read_text("utf-8", "replace").strip()
        raise SourceError(f"git daemon did not start: {output[-2000:] or 'no output'}")

    def stop(self) -> None:
        """Stop the daemon and every connection it is serving."""
        if self._process is not None:
            _kill_group(self._process)
            self._process = None

    # -- repositories ----------------------------------------------------------------------

    def url_for(self, name: str) -> str:
        """The git:// URL of repository `name` (it need not exist yet)."""
        if self.port is None:
            raise SourceError("the git server is not running")
        return f"git://127.0.0.1:{self.port}/{_check_name(name)}.git"

    def path_for(self, name: str) -> Path:
        return self.repos_dir / f"{_check_name(name)}.git"

    def create_repo(self, name: str, *, files: dict[str, str], branch: str = "main") -> str:
        """A new repository whose first commit on `branch` holds `files`; returns the commit."""
        path = self.path_for(name)
        if path.exists():
            raise SourceError(f"repository {name!r} already exists")
        self.repos_dir.mkdir(parents=True, exist_ok=True)
        self._git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(path))
        return self._write_commit(
            name, branch=branch, parent=None, files=files, delete=[], message="Initial commit"
        )

    def commit(
        self,
        name: str,
        *,
        branch: str,
        files: dict[str, str] | None = None,
        delete: list[str] | None = None,
        message: str = "Update",
    ) -> str:
        """A commit on top of `branch` writing `files` and removing `delete`; returns it."""
        parent = self.head(name, branch)
        return self._write_commit(
            name,
            branch=branch,
            parent=parent,
            files=files or {},
            delete=delete or [],
            message=message,
        )

    def create_branch(self, name: str, branch: str, *, from_branch: str = "main") -> str:
        """A new branch at the head of `from_branch`; returns that commit."""
        commit = self.head(name, from_branch)
        # An empty old value makes update-ref refuse to overwrite an existing branch.
        self._git("update-ref", HEADS + branch, commit, "", git_dir=self.path_for(name))
        return commit

    def delete_branch(self, name: str, branch: str) -> None:
        self._git("update-ref", "-d", HEADS + branch, git_dir=self.path_for(name))

    def head(self, name: str, branch: str) -> str:
        """The commit `branch` points at."""
        return self._git(
            "rev-parse",
            "--verify",
            "--quiet",
            f"{HEADS}{branch}^{{commit}}",
            git_dir=self.path_for(name),
        )

    # -- plumbing --------------------------------------------------------------------------

    def _write_commit(
        self,
        name: str,
        *,
        branch: str,
        parent: str | None,
        files: dict[str, str],
        delete: list[str],
        message: str,
    ) -> str:
        git_dir = self.path_for(name)
        with tempfile.TemporaryDirectory(prefix="kapsa-index-") as tmp:
            index = Path(tmp) / "index"
            if parent is not None:
                self._git("read-tree", parent, git_dir=git_dir, index=index)
            for path, content in files.items():
                blob = self._git("hash-object", "-w", "--stdin", git_dir=git_dir, stdin=content)
                self._git(
                    "update-index",
                    "--add",
                    "--cacheinfo",
                    f"100644,{blob},{path}",
                    git_dir=git_dir,
                    index=index,
                )
            if delete:
                # Mode 0 removes an entry; unlike --force-remove it needs no work tree.
                removals = "".join(f"0 {'0' * 40}\t{path}\n" for path in delete)
                self._git(
                    "update-index", "--index-info", git_dir=git_dir, index=index, stdin=removals
                )
            tree = self._git("write-tree", git_dir=git_dir, index=index)
        parents = ["-p", parent] if parent is not None else []
        commit = self._git("commit-tree", tree, *parents, "-m", message, git_dir=git_dir)
        # The old value makes the update fail instead of losing a concurrent commit.
        self._git("update-ref", HEADS + branch, commit, parent or "", git_dir=git_dir)
        return commit

    def _git(
        self,
        *args: str,
        git_dir: Path | None = None,
        index: Path | None = None,
        stdin: str | None = None,
    ) -> str:
        env = dict(self._env)
        if git_dir is not None:
            env["GIT_DIR"] = str(git_dir)
        if index is not None:
            env["GIT_INDEX_FILE"] = str(index)
        result = subprocess.run(
            ["git", *args],
            input=(stdin or "").encode("utf-8"),
            capture_output=True,
            env=env,
            cwd=self.base_dir,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            stderr = result.stderr.decode("utf-8", "replace").strip()
            raise SourceError(f"git {args[0]} failed in the git server: {stderr or 'no output'}")
        return result.stdout.decode("utf-8").strip()


def _check_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name) or name.endswith(".git"):
        raise ValueError(f"repository name {name!r}: use letters, digits, '.', '_' and '-'")
    return name


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """git daemon forks one child per connection; end them all with it."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            process.wait()
