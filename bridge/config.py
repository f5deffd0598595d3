"""The settings under their first names: a re-export of :mod:`bridge.settings`.

``bridge.config.load(path, env)`` and the names ``Config``, ``SpoolConfig``,
``ForwardConfig`` and ``DestinationConfig`` keep working for scripts written against the
first releases; new code imports :mod:`bridge.settings`, the one home of every setting
(the keys, their defaults, the environment variables and the precedence are described
there and in docs/forwarding.md, "Configuration").
"""

from __future__ import annotations

from bridge.settings import (
    DestinationSettings,
    ForwardSettings,
    Settings,
    SettingsError,
    SpoolSettings,
    load,
)

__all__ = ["Config", "DestinationConfig", "ForwardConfig", "SettingsError", "SpoolConfig", "load"]

Config = Settings
SpoolConfig = SpoolSettings
ForwardConfig = ForwardSettings
DestinationConfig = DestinationSettings
