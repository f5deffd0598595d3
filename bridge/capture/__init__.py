"""The 50-pin bus seen from outside: traces shown, the bus drawn, captures decoded.

docs/capture.md is the guide. The modules, from the wire up:

* :mod:`bridge.capture.bus`: words <-> line edges (:class:`~bridge.capture.bus.Changes`)
  under the profile's physical section; the handshake modes (:data:`~bridge.capture.bus.MODES`),
  :func:`~bridge.capture.bus.synthesise` and :class:`~bridge.capture.bus.WordRecovery`;
  pure.
* :mod:`bridge.capture.vcd`, :mod:`bridge.capture.sigrok`: capture files read in blocks
  (VCD, sigrok ``.sr``), and the VCD writer.
* :mod:`bridge.capture.channels`: which probe is which line (channel maps).
* :mod:`bridge.capture.observe`: a passive observer, words -> frames, packets, messages.
* :mod:`bridge.capture.trace`: ``spy+`` traces shown layer by layer and exported as VCD.
* :mod:`bridge.capture.decode`: a capture to words, messages and DICOM
  (:func:`~bridge.capture.decode.read_lines`, :func:`~bridge.capture.decode.read_words`,
  :func:`~bridge.capture.decode.decode_capture`).
"""
