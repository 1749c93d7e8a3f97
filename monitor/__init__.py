"""tmpwarden's monitor: a sidecar that watches /tmp and memory inside any Lambda."""

from monitor.errors import ConfigurationError, TmpwardenError

__all__ = ["ConfigurationError", "TmpwardenError"]
