"""Former home of :class:`FolderWriter`: now :mod:`bridge.link.receiver`; kept so that old
imports work.
"""

from bridge.link.receiver import FolderWriter

__all__ = ["FolderWriter"]
