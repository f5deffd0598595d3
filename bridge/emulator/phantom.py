"""Former home of the phantom generator: now :mod:`bridge.testing.phantom`; kept so that
old imports work.
"""

from bridge.testing.phantom import PhantomSpec, phantom_dataset, phantom_file, phantom_pixels

__all__ = ["PhantomSpec", "phantom_dataset", "phantom_file", "phantom_pixels"]
