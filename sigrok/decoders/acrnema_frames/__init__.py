# SPDX-License-Identifier: MIT
# Copyright (c) the acrnema-bridge authors

"""ACR-NEMA 50-pin bus: words to frames, packets and messages (libsigrokdecode, API 3).

Stacked on ``acrnema_bus``. Per sending side it hunts for the start word, reads the
frame header (type and sequence number, payload count), checks the CRC-16 check word and
the parity of every word, as acrnema-bridge's reference link profile defines them
(docs/link-profile.md, sections 2 and 3); DATA frames taken in sequence order carry the
transport packets, which it annotates with the messages they assemble. Options of the
profile's names set the dialect knobs: the check word (``crc`` and its parameters),
``delimiting``, ``ack_mode`` and ``transport_mode`` (docs/link-profile.md, "Dialect
knobs"; docs/capture.md, section 1.6).

This package runs inside libsigrokdecode's Python, not in acrnema-bridge: it imports
nothing from the bridge.
"""

from .pd import Decoder

__all__ = ["Decoder"]
