"""The pictures in docs/images, drawn by Graphviz from their sources: `python -m kapsa.cli.images`.

The state diagrams come from the machines (kapsa.machines.dot), the architecture from
docs/images/architecture.dot. Each SVG carries the SHA-256 of the source it was drawn from, so
tests/docs/test_images.py fails when a machine or the architecture changes and the picture was
not drawn again, whatever Graphviz version drew it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from kapsa.errors import KapsaError
from kapsa.machines import KINDS, dot

IMAGES = Path("docs") / "images"
ARCHITECTURE = "architecture"
STAMP = "<!-- drawn by `python -m kapsa.cli.images` from a source with sha256 {digest} -->"


def sources(images: Path) -> dict[str, str]:
    """Picture name -> its DOT source."""
    found = {f"{kind}-states": dot(kind) for kind in KINDS}
    found[ARCHITECTURE] = (images / f"{ARCHITECTURE}.dot").read_text(encoding="utf-8")
    return found


def stamp(source: str) -> str:
    return STAMP.format(digest=hashlib.sha256(source.encode()).hexdigest())


def svg(source: str) -> str:
    """`source` drawn as SVG by Graphviz's `dot`, stamped with the source's digest."""
    binary = shutil.which("dot")
    if binary is None:
        raise KapsaError("drawing needs Graphviz's `dot` (Debian: apt-get install graphviz)")
    drawn = subprocess.run(
        [binary, "-Tsvg"], input=source, capture_output=True, text=True, check=False, timeout=60
    )
    if drawn.returncode != 0:
        raise KapsaError(f"dot refused the diagram: {drawn.stderr.strip()}")
    head, _, rest = drawn.stdout.partition("<svg")
    return f"{head}{stamp(source)}\n<svg{rest}"


def write(images: Path) -> list[Path]:
    """Draw every picture into `images`; the paths written."""
    written = []
    for name, source in sources(images).items():
        if name != ARCHITECTURE:
            (images / f"{name}.dot").write_text(source, encoding="utf-8")
        path = images / f"{name}.svg"
        path.write_text(svg(source), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1]) if len(sys.argv) > 1 else IMAGES):
        sys.stdout.write(f"wrote {path}\n")
