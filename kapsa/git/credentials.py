"""How git gets a project's credentials without them reaching argv, URLs, logs or errors.

Every git process Kapsa runs gets an environment built here: no system or user configuration
(a developer's `~/.gitconfig` or the image's `/etc/gitconfig` must not change what the operator
does), no terminal prompts (a missing password fails instead of hanging), only protocol v2, and
the `ext::`/`fd::` transports switched off whatever URL reaches git, no http redirects, and ssh
trusting only the host keys pinned in `known_hosts`. When the URL's check pinned an address
(kapsa.git.urls.Pin), curl and ssh connect to that address and never resolve the name again.
Passwords go through a
GIT_ASKPASS script reading them from the environment, which only the operator's own user can
read (argv is visible to everyone through /proc); SSH keys go to a 0600 file in a private
temporary directory that is removed when the command ends.
"""

from __future__ import annotations

import os
import shlex
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kapsa.errors import InvalidSpecError
from kapsa.git.urls import Pin

#: Keys of the Secret types Kubernetes defines for these shapes (kubernetes.io/basic-auth and
#: kubernetes.io/ssh-auth), plus the `known_hosts` key Flux and Argo CD users already write.
USERNAME_KEY = "username"
PASSWORD_KEY = "password"  # noqa: S105 - the key's name, not a password
SSH_KEY_KEY = "ssh-privatekey"
KNOWN_HOSTS_KEY = "known_hosts"

#: Shorter values are not worth scrubbing from messages (a username like `git` would mangle them).
_MIN_SCRUB_LEN = 4

_ASKPASS_SCRIPT = """#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "$KAPSA_GIT_USERNAME" ;;
  *) printf '%s\\n' "$KAPSA_GIT_PASSWORD" ;;
esac
"""

_CONFIG = {
    "protocol.version": "2",
    "protocol.ext.allow": "never",
    "protocol.fd.allow": "never",
    "credential.helper": "",
    # An allowed host must not be able to send git (and the credentials) to another address.
    "http.followRedirects": "false",
}


@dataclass(frozen=True, kw_only=True)
class GitCredentials:
    """What a project's credentials Secret holds; kept out of repr so it never reaches a log."""

    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    ssh_private_key: str | None = field(default=None, repr=False)
    #: Pins the SSH host keys. Without it no ssh host is trusted: every connection would see a
    #: fresh, empty known_hosts, so trusting the first key would trust every key.
    known_hosts: str | None = field(default=None, repr=False)

    def secrets(self) -> list[str]:
        """Values that must never appear in a message shown to anyone."""
        values = [self.username, self.password, self.ssh_private_key]
        return [value for value in values if value and len(value) >= _MIN_SCRUB_LEN]


def _decode(data: dict[str, bytes], key: str) -> str | None:
    raw = data.get(key)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidSpecError(f"credentials secret key {key!r} is not UTF-8 text") from exc


def credentials_from_secret_data(data: dict[str, bytes]) -> GitCredentials:
    """Credentials from a basic-auth (`username`, `password`) or ssh-auth (`ssh-privatekey`)
    Secret's decoded data; anything else is a spec error the user has to fix."""
    creds = GitCredentials(
        username=_decode(data, USERNAME_KEY),
        password=_decode(data, PASSWORD_KEY),
        ssh_private_key=_decode(data, SSH_KEY_KEY),
        known_hosts=_decode(data, KNOWN_HOSTS_KEY),
    )
    if creds.password is None and creds.ssh_private_key is None:
        raise InvalidSpecError(
            f"credentials secret needs {PASSWORD_KEY!r} (with {USERNAME_KEY!r}) for https "
            f"or {SSH_KEY_KEY!r} for ssh; it has {sorted(data)}"
        )
    return creds


def scrub(text: str, credentials: GitCredentials | None) -> str:
    """`text` with every credential value replaced, for errors, events and logs."""
    if credentials is None:
        return text
    for value in sorted(credentials.secrets(), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def _write_private(path: Path, content: str, *, mode: int = stat.S_IRUSR | stat.S_IWUSR) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)


def _pinned_config(pin: Pin | None) -> dict[str, str]:
    if pin is None or pin.ssh:
        return {}
    address = f"[{pin.address}]" if ":" in pin.address else pin.address
    return {"http.curloptResolve": f"{pin.host}:{pin.port}:{address}"}


def _pinned_ssh_options(pin: Pin | None) -> list[str]:
    if pin is None or not pin.ssh:
        return []
    # The host key is still looked up under the name the user wrote (and its port, as
    # known_hosts spells a non-standard one), not under the address.
    alias = pin.host if pin.port == 22 else f"[{pin.host}]:{pin.port}"
    return ["-o", f"HostName={pin.address}", "-o", f"HostKeyAlias={alias}"]


def _ssh_command(home: Path, credentials: GitCredentials | None, pin: Pin | None) -> str:
    known_hosts = home / "known_hosts"
    options = [
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        *_pinned_ssh_options(pin),
    ]
    pinned = (credentials.known_hosts or "") if credentials is not None else ""
    _write_private(known_hosts, pinned.rstrip("\n") + "\n" if pinned else "")
    if credentials is not None and credentials.ssh_private_key:
        key = home / "id_key"
        # OpenSSH refuses a key file without its final newline.
        _write_private(key, credentials.ssh_private_key.rstrip("\n") + "\n")
        options += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    return shlex.join(["ssh", *options])


@contextmanager
def git_environment(
    credentials: GitCredentials | None, *, pin: Pin | None = None
) -> Iterator[dict[str, str]]:
    """A complete environment for one git command; credential files vanish on exit."""
    with tempfile.TemporaryDirectory(prefix="kapsa-git-") as tmp:
        home = Path(tmp)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_SSH_COMMAND": _ssh_command(home, credentials, pin),
        }
        config = {**_CONFIG, **_pinned_config(pin)}
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for index, (key, value) in enumerate(config.items()):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        if credentials is not None and credentials.password is not None:
            askpass = home / "askpass"
            _write_private(askpass, _ASKPASS_SCRIPT, mode=stat.S_IRWXU)
            env["GIT_ASKPASS"] = str(askpass)
            env["KAPSA_GIT_USERNAME"] = credentials.username or ""
            env["KAPSA_GIT_PASSWORD"] = credentials.password
        yield env
