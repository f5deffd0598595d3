"""Former home of file ingestion; kept so that old imports work.

Taking a file into the spool converts, which is not storage's work: :func:`ingest_file`
and :class:`IngestResult` now live in :mod:`bridge.ingest`, the Part 10 helpers
(:func:`dataset_bytes`, :func:`object_info`, :func:`describe_object`) in
:mod:`bridge.spool.objects` (docs/architecture.md, "Moves"). This module is the one of
``bridge/spool`` that reaches :mod:`bridge.dicom`, through that re-export only.
"""

from bridge.ingest import IngestResult, ingest_file
from bridge.spool.objects import dataset_bytes, describe_object, object_info

__all__ = ["IngestResult", "dataset_bytes", "describe_object", "ingest_file", "object_info"]
