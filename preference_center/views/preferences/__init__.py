"""The preference center: everything a subscriber can do from a link in any of our emails.

No login: the link's signed "manage" token identifies the person. Every change is a POST with
a CSRF token, except the RFC 8058 one-click unsubscribe, which is authenticated by its own
token and carries no cookie by design.

The routes are in the modules below, on one blueprint (``bp``, in common.py), so every
endpoint keeps its name (``preferences.manage``, ``preferences.export``...).
"""

from __future__ import annotations

# Importing the modules registers their routes on bp.
from . import data, links, page
from .common import bp, safe_next

__all__ = ["bp", "data", "links", "page", "safe_next"]
