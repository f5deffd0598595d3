"""Former home of the emulator pieces; its modules still give them, with a DeprecationWarning.

Where each piece lives now (docs/architecture.md, "Moves"):

* ``bridge.emulator.scanner`` -> :mod:`bridge.link.requester` (the requesting role) and
  :func:`bridge.testing.phantom.phantom_images`;
* ``bridge.emulator.receiver`` -> :mod:`bridge.link.receiver`;
* ``bridge.emulator.phantom`` -> :mod:`bridge.testing.phantom`;
* ``bridge.emulator.box`` -> :mod:`bridge.testing.box` (the emulated interface box);
* ``bridge.emulator.store_scp`` -> :mod:`bridge.testing.store_scp` (the embedded DICOM
  store).
"""
