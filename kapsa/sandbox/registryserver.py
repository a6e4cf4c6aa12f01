"""A real image registry on loopback, for the test suite and the `kapsa sandbox` demo.

It runs Debian's `docker-registry` (the CNCF distribution registry) with htpasswd logins and,
optionally, TLS from a throwaway CA, so Kapsa's registry check meets the same challenges, status
codes and certificate errors it meets in production. `push` stores images assembled here (see
kapsa.controlplane.images) that pods on the real node pull and run; `put_image` a tiny one for
what needs only a manifest digest that really exists.
"""

from __future__ import annotations

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

from kapsa.controlplane.images import MANIFEST_V2, Image, Layer, sha256
from kapsa.errors import RegistryError
from kapsa.lifecycle import Service

REGISTRY_BINARY = "docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
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
        """Push a one-layer image with no files as `repository:tag` and return its digest.

        The config names the repository and tag, so every pair gets a digest of its own. For
        what only needs a digest that really exists; `push` stores images that run.
        """
        image = Image.build(
            layers=[Layer()],
            entrypoint=[],
            labels={"io.kapsa.sandbox.image": f"{repository}:{tag}"},
        )
        return self.push(image, repository=repository, tag=tag)

    def push(self, image: Image, *, repository: str, tag: str) -> str:
        """Store `image` as `repository:tag` through the v2 API, as any client does."""
        for blob in (image.config, *image.layers):
            self._put_blob(repository, blob)
        answer = self._session.put(
            f"{self.url}/v2/{repository}/manifests/{tag}",
            data=image.manifest,
            headers={"Content-Type": MANIFEST_V2},
            timeout=30,
        )
        self._expect(answer, 201, what=f"store the manifest of {repository}:{tag}")
        stored = answer.headers.get("Docker-Content-Digest", image.digest)
        if stored != image.digest:
            raise RegistryError(
                f"the registry stored {repository}:{tag} as {stored}, not {image.digest}"
            )
        return image.digest

    def digest_of(self, repository: str, tag: str) -> str:
        """The digest `repository:tag` names now, as the registry reports it."""
        answer = self._session.head(
            f"{self.url}/v2/{repository}/manifests/{tag}",
            headers={"Accept": f"{MANIFEST_V2}, {OCI_MANIFEST}"},
            timeout=10,
        )
        self._expect(answer, 200, what=f"look up {repository}:{tag}")
        return str(answer.headers["Docker-Content-Digest"])

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
        digest = sha256(blob)
        known = self._session.head(f"{self.url}/v2/{repository}/blobs/{digest}", timeout=10)
        if known.status_code == 200:
            return  # layers shared between images are uploaded once, as clients do
        started = self._session.post(f"{self.url}/v2/{repository}/blobs/uploads/", timeout=10)
        self._expect(started, 202, what=f"start a blob upload to {repository}")
        location = urljoin(f"{self.url}/", started.headers["Location"])
        finished = self._session.put(
            location,
            params={"digest": digest},
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
