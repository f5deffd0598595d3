# SPDX-License-Identifier: MIT
# Copyright (c) the acrnema-bridge authors

"""ACR-NEMA 50-pin bus: the word handshake to 16-bit words (libsigrokdecode, API 3).

The first of two stacked decoders for the 50-pin bus of acrnema-bridge's link profile
(docs/link-profile.md, section 1; install and options: docs/capture.md, "PulseView
decoder"). It follows the handshake (four-phase REQ/ACK, two-phase transition, or
strobe), samples D0-D15 and the parity line(s) where the data are valid, checks parity,
tells the driving side from DIR (or BREQ), and annotates each word and each handshake
phase. Stack ``acrnema_frames`` on it for frames, packets and messages.

This package runs inside libsigrokdecode's Python, not in acrnema-bridge: it imports
nothing from the bridge.
"""

from .pd import Decoder

__all__ = ["Decoder"]
