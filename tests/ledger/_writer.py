"""A writer process for the concurrency and crash tests.

`python -m tests.ledger._writer URL UID FIRST COUNT` opens the ledger, waits for a line on stdin
(so that several writers start together, past their imports), then appends seqs
FIRST..FIRST+COUNT-1 of one object and prints each seq once append has returned: the
acknowledgement the test holds the ledger to.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from kapsa.ledger import Ledger
from tests.ledger._factory import entry


def main(url: str, uid: str, first: int, count: int) -> None:
    with Ledger.open(url) as ledger:
        sys.stdin.readline()
        for seq in range(first, first + count):
            ledger.append(entry(uid=uid, seq=seq, at=datetime.now(UTC), name=uid))
            print(seq, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
