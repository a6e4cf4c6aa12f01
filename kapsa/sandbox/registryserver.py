"""A real image registry on loopback, for the test suite and the `kapsa sandbox` demo.

It runs Debian's `docker-registry` (the CNCF distribution registry) with htpasswd logins and,
optionally, TLS from a throwaway CA, so Kapsa's registry check meets the same challenges, status
codes and certificate errors it meets in production. `put_image` stores a tiny but valid image,
because what other parts of Kapsa need from a registry is a manifest digest that really exists.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urljoin

import requests
import yaml

from kapsa.errors import RegistryError
from kapsa.lifecycle import Service

REGISTRY_BINARY = "docker-registry"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
LAYER_TAR_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
#: A tar archive with no members: the end-of-archive marker alone.
EMPTY_TAR = b"\0" * 1024
START_TIMEOUT = 20.0

_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = Kapsa sandbox
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def _sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(argv: list[str], *, what: str, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise RegistryError(f"cannot {what}: {argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise RegistryError(f"cannot {what}: {argv[0]} exited {done.returncode}: {done.stderr}")
    return done.stdout


class RegistryServer(Service):
    """One `docker-registry serve` on 127.0.0.1; storage, logins and certificates in `workdir`."""

    def __init__(self, *, workdir: Path, username: str, password: str, tls: bool = False) -> None:
        self.workdir = workdir
        self.username = username
        self.password = password
        self.tls = tls
        self.port = _free_port()
        self.log = workdir / "registry.log"
        self._popen: subprocess.Popen[bytes] | None = None
        self._session = requests.Session()
        # Nothing from the environment: a proxy variable must not capture loopback traffic.
        self._session.trust_env = False
        self._session.auth = (username, password)

    @property
    def server(self) -> str:
        """What a Registry's `spec.server` says: host:port."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.server}"

    @property
    def ca_bundle(self) -> str | None:
        """The PEM file that makes clients trust this registry; None when it speaks plain HTTP."""
        return str(self.workdir / "tls" / "ca.pem") if self.tls else None

    def start(self) -> None:
        """Start and return once /v2/ answers, so the first request of a test never races it."""
        if self._popen is not None and self._popen.poll() is None:
            return
        binary = shutil.which(REGISTRY_BINARY)
        if binary is None:
            raise RegistryError(
                f"{REGISTRY_BINARY} is not installed "
                "(apt-get install docker-registry apache2-utils)"
            )
        config = self._write_config()
        self._session.verify = self.ca_bundle or True
        # REGISTRY_* variables override the config file; none may leak in from the caller.
        env = {key: value for key, value in os.environ.items() if not key.startswith("REGISTRY_")}
        with self.log.open("ab") as out:
            self._popen = subprocess.Popen(
                [binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self._wait_ready()

    def stop(self) -> None:
        popen, self._popen = self._popen, None
        if popen is None or popen.poll() is not None:
            return
        popen.terminate()
        try:
            popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=10)

        self._session.close()

    def put_image(self, *, repository: str, tag: str) -> str:
        """Push a one-layer image as `repository:tag` and return its manifest digest.

        The config names the repository and tag, so every pair gets a digest of its own.
        """
        layer = gzip.compress(EMPTY_TAR, mtime=0)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": {"io.kapsa.sandbox.image": f"{repository}:{tag}"}},
                "rootfs": {"type": "layers", "diff_ids": [_sha256(EMPTY_TAR)]},
            },
            sort_keys=True,
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_V2,
                "config": {"mediaType": CONFIG_V1, "size": len(config), "digest": _sha256(config)},
                "layers": [
                    {"mediaType": LAYER_TAR_GZIP, "size": len(layer), "digest": _sha256(layer)}
                ],
            },
            sort_keys=True,
        ).encode()
        self._put_blob(repository, config)
        self._put_blob(repository, layer)
        answer = self._session.put(
            f"{self.url}/v2/{repository}/manifests/{tag}",
            data=manifest,
            headers={"Content-Type": MANIFEST_V2},
            timeout=10,
        )
        self._expect(answer, 201, what=f"store the manifest of {repository}:{tag}")
        digest = _sha256(manifest)
        stored = answer.headers.get("Docker-Content-Digest", digest)
        if stored != digest:
            raise RegistryError(f"the registry stored {repository}:{tag} as {stored}, not {digest}")
        return digest

    def has_manifest(self, repository: str, reference: str) -> bool:
        """Whether `reference` (a tag or a sha256 digest) names a manifest in `repository`."""
        answer = self._session.head(
            f"{self.url}/v2/{repository}/manifests/{reference}",
            headers={"Accept": f"{MANIFEST_V2}, {OCI_MANIFEST}"},
            timeout=10,
        )
        if answer.status_code == 404:
            return False
        self._expect(answer, 200, what=f"look up {repository}:{reference}")
        return True

    def _put_blob(self, repository: str, blob: bytes) -> None:
        started = self._session.post(f"{self.url}/v2/{repository}/blobs/uploads/", timeout=10)
        self._expect(started, 202, what=f"start a blob upload to {repository}")
        location = urljoin(f"{self.url}/", started.headers["Location"])
        finished = self._session.put(
            location,
            params={"digest": _sha256(blob)},
            data=blob,
            headers={"Content-Type": "application/octet-stream"},
            timeout=10,
        )
        self._expect(finished, 201, what=f"upload a blob to {repository}")

    @staticmethod
    def _expect(answer: requests.Response, status: int, *, what: str) -> None:
        if answer.status_code != status:
            raise RegistryError(
                f"cannot {what}: HTTP {answer.status_code} {answer.text[:300].strip()}"
            )

    def _write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        htpasswd = self.workdir / "htpasswd"
        # -i reads the password from stdin, keeping it out of the process list.
        htpasswd.write_text(
            _run(["htpasswd", "-nBi", self.username], stdin=self.password, what="make htpasswd")
        )
        http: dict[str, object] = {
            "addr": self.server,
            "secret": secrets.token_hex(16),
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        }
        if self.tls:
            certificate, key = self._make_certificates()
            http["tls"] = {"certificate": str(certificate), "key": str(key)}
        config = {
            "version": "0.1",
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.workdir / "storage")},
                "delete": {"enabled": True},
            },
            "http": http,
            "auth": {"htpasswd": {"realm": "kapsa-sandbox", "path": str(htpasswd)}},
        }
        path = self.workdir / "config.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _make_certificates(self) -> tuple[Path, Path]:
        """A throwaway CA and a certificate for 127.0.0.1 and localhost signed by it.

        A separate CA rather than one self-signed leaf: strict X.509 checking (Python 3.13's
        default) rejects a certificate that is its own CA and its own server.
        """
        folder = self.workdir / "tls"
        folder.mkdir(parents=True, exist_ok=True)
        cnf = folder / "openssl.cnf"
        cnf.write_text(_OPENSSL_CONFIG)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        ca, ca_key = folder / "ca.pem", folder / "ca.key"
        cert, key = folder / "server.pem", folder / "server.key"
        common = ["openssl", "req", "-x509", "-config", str(cnf), "-days", "7", *ec]
        _run(
            [
                *common,
                *("-extensions", "ca", "-subj", "/CN=Kapsa sandbox CA"),
                *("-keyout", str(ca_key), "-out", str(ca)),
            ],
            what="make the sandbox CA",
        )
        _run(
            [
                *common,
                *("-extensions", "leaf", "-subj", "/CN=localhost"),
                *("-CA", str(ca), "-CAkey", str(ca_key), "-keyout", str(key), "-out", str(cert)),
            ],
            what="make the registry certificate",
        )
        return cert, key

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._popen is None or self._popen.poll() is not None:
                raise RegistryError(
                    f"docker-registry exited at start; see {self.log}:\n{self._tail()}"
                )
            try:
                self._session.get(f"{self.url}/v2/", timeout=1)
            except requests.RequestException:
                pass
            else:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RegistryError(
                    f"docker-registry did not answer within {START_TIMEOUT:g}s; see {self.log}:\n"
                    f"{self._tail()}"
                )
            time.sleep(0.05)

    def _tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""
