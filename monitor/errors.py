"""The root of every error tmpwarden raises.

It lives in ``monitor`` because ``handler`` depends on ``monitor`` and never the
other way round; both packages raise subclasses of :class:`TmpwardenError`.
"""

from __future__ import annotations


class TmpwardenError(Exception):
    """Base class of every error a user of tmpwarden can meet.

    The message names the input, what was wrong with it and what to do.
    """


class ConfigurationError(TmpwardenError, ValueError):
    """When a setting (argument or ``TMPWARDEN_*`` variable) has an invalid value."""
