"""The operator's HTTP port: health and readiness probes, Prometheus metrics, signed push
webhooks that trigger a poll at once, and the audit ledger read-only for `kapsa history --server`.
"""

from kapsa.web.server import WebServer

__all__ = ["WebServer"]
