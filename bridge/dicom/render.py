"""Pictures of DICOM objects: small PNG thumbnails drawn the way a viewer would draw them.

Used by the status page (recent images) and by ``convert --previews`` (the archive index).
A thumbnail shows what the object itself says a reader should see, not a guess:

* grey-scale (MONOCHROME1/2): the Modality LUT (Rescale Slope/Intercept or a Modality LUT
  Sequence), then the object's first VOI window (Window Center/Width with its VOI LUT
  Function: LINEAR, LINEAR_EXACT or SIGMOID, PS3.3 C.11.2.1.2) or its VOI LUT Sequence;
  without either, the image's own minimum to maximum. MONOCHROME1 is drawn inverted
  (its minimum is white);
* PALETTE COLOR through its Red/Green/Blue Palette Colour LUTs;
* RGB and the YBR forms as colour (pydicom converts YBR to RGB when it decodes);
* one frame of a multi-frame object: the middle one, the most likely to show anatomy.

Drawing is cheap enough to do while the link runs (a 512x512 slice in about two
milliseconds; docs/benchmarks.md): grey integer pixels go through the Modality LUT and the
VOI transform once per stored value, as a table, which then maps every pixel (the same
numbers as transforming each pixel, at a fraction of the floating-point work); the
picture is shrunk by Pillow's box reduce then LANCZOS, and the PNG written without
Pillow's slow ``optimize`` search (it saved about 1 % of a 3 KB file for 2 ms).

Pixels are decoded by pydicom (compressed forms only where a decoder is installed: Pillow
decodes baseline JPEG and JPEG 2000). Whatever fails, the caller gets one
:class:`~bridge.errors.RenderError` saying why, and shows a placeholder instead.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.pixels.utils import pixel_array

from bridge.errors import RenderError

__all__ = ["RenderError", "render", "thumbnail_png"]

_GREY = frozenset({"MONOCHROME1", "MONOCHROME2"})


class _QuietWhileDrawing(logging.Filter):
    """Drops pydicom's decoder log records in a thread while it draws a picture.

    pydicom logs each decoder that fails at ERROR, with its traceback, and then raises;
    the raise reaches the caller as one :class:`RenderError` line, so the log record is
    only noise (a traceback on the terminal of ``convert --previews``). Other threads,
    and pydicom outside drawing, log as before.
    """

    def __init__(self) -> None:
        super().__init__()
        # a context variable: each thread (and task) has its own value, no thread module
        self.active = contextvars.ContextVar("acrnema_bridge_drawing", default=False)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.active.get()

    @contextlib.contextmanager
    def drawing(self) -> Iterator[None]:
        token = self.active.set(True)
        try:
            yield
        finally:
            self.active.reset(token)


_QUIET = _QuietWhileDrawing()
logging.getLogger("pydicom.pixels.decoders.base").addFilter(_QUIET)


def thumbnail_png(ds: Dataset, max_size: int = 128, *, source: str | None = None) -> bytes:
    """The PNG bytes of a picture of ``ds`` at most ``max_size`` pixels on its longer side.

    ``source`` names the object in a :class:`RenderError` (default: its SOP Instance UID).
    """
    if max_size < 1:
        raise ValueError(f"max_size must be at least 1, not {max_size}")
    image = render(ds, source=source)
    image.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def render(ds: Dataset, *, source: str | None = None) -> Image.Image:
    """A picture of ``ds`` (mode ``L`` for grey, ``RGB`` for colour) at its own size."""
    where = source or f"instance {ds.get('SOPInstanceUID', '(no SOP Instance UID)')}"
    if "PixelData" not in ds:
        raise RenderError("the object has no Pixel Data (7FE0,0010)", source=where)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    try:
        with _QUIET.drawing():
            pixels = _frame(ds)
        if photometric in _GREY or (not photometric and pixels.ndim == 2):
            return Image.fromarray(_grey(pixels, ds, invert=photometric == "MONOCHROME1"))
        if photometric == "PALETTE COLOR":
            return Image.fromarray(_to_8bit(apply_color_lut(pixels, ds)), mode="RGB")
        if pixels.ndim == 3 and pixels.shape[-1] == 3:
            return Image.fromarray(_to_8bit(pixels, int(ds.get("BitsStored", 8))), mode="RGB")
    except RenderError as exc:
        raise RenderError(exc.reason, source=where) from exc
    except Exception as exc:  # pydicom and numpy raise many kinds; the caller needs one
        reason = f"the pixels cannot be drawn: {type(exc).__name__}: {exc}"
        raise RenderError(reason, source=where) from exc
    reason = f"Photometric Interpretation {photometric or '(none)'} is not drawn"
    raise RenderError(reason, source=where)


def _frame(ds: Dataset) -> np.ndarray[Any, Any]:
    """The pixels of the middle frame (one frame only is decoded)."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        return np.asarray(pixel_array(ds, index=frames // 2))
    return np.asarray(ds.pixel_array)


_TABLE_FROM = 4096
"""Grey integer images of at least this many pixels are drawn through a table."""


def _grey(pixels: np.ndarray[Any, Any], ds: Dataset, *, invert: bool) -> np.ndarray[Any, Any]:
    """Grey pixels through the Modality LUT and the first VOI transform to 0-255.

    Integer pixels whose values span fewer than a quarter of the pixel count are drawn
    through a table of every value from their minimum to their maximum (a 12-bit CT
    slice: at most 4096 entries for 262144 pixels); only the values present count for a
    stretch, so the result is the same as drawing each pixel."""
    if pixels.ndim != 2:
        raise RenderError(f"grey-scale pixels of shape {pixels.shape} are not one image")
    if pixels.dtype.kind in "iu" and pixels.size >= _TABLE_FROM:
        low, high = int(pixels.min()), int(pixels.max())
        if high - low < pixels.size // 4:
            index = pixels.astype(np.intp) - low
            present = np.bincount(index.ravel(), minlength=high - low + 1) > 0
            stored = np.arange(low, high + 1).astype(pixels.dtype)[np.newaxis, :]
            table = _grey_of(stored, ds, invert=invert, present=present[np.newaxis, :])
            grey: np.ndarray[Any, Any] = table[0][index]
            return grey
    return _grey_of(pixels, ds, invert=invert)


def _grey_of(
    pixels: np.ndarray[Any, Any],
    ds: Dataset,
    *,
    invert: bool,
    present: np.ndarray[Any, Any] | None = None,
) -> np.ndarray[Any, Any]:
    """:func:`_grey` of each pixel; ``present`` marks the ones that count for a stretch
    (None: all of them)."""
    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    window = _window(ds)
    if window is not None:
        out = _apply_window(values, *window, str(ds.get("VOILUTFunction", "LINEAR")))
    elif "VOILUTSequence" in ds:
        voi = np.asarray(apply_voi_lut(pixels, ds, index=0), dtype=np.float64)
        out = _stretch(voi, present)
    else:
        out = _stretch(values, present)
    grey: np.ndarray[Any, Any] = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return np.subtract(255, grey, dtype=np.uint8) if invert else grey


def _window(ds: Dataset) -> tuple[float, float] | None:
    """The first (center, width) the object gives, or None without a usable one."""
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None or center == "" or width == "":
        return None
    c = float(center[0] if isinstance(center, MultiValue) else center)
    w = float(width[0] if isinstance(width, MultiValue) else width)
    if not (math.isfinite(c) and math.isfinite(w)) or w <= 0:
        return None
    return c, w


def _apply_window(
    values: np.ndarray[Any, Any], center: float, width: float, function: str
) -> np.ndarray[Any, Any]:
    """PS3.3 C.11.2.1.2-3: the VOI LUT Function of a window, to the output range 0-255."""
    function = function.strip().upper()
    if function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return (values - center) / width * 255.0 + 127.5
    if width < 1:  # LINEAR requires width >= 1; treat a narrower one as a threshold
        width = 1.0
    return ((values - (center - 0.5)) / (width - 1.0 or 1.0) + 0.5) * 255.0


def _stretch(
    values: np.ndarray[Any, Any], present: np.ndarray[Any, Any] | None = None
) -> np.ndarray[Any, Any]:
    """The image's own minimum to maximum on 0-255 (a flat image is mid-grey); only the
    ``present`` values count (None: all)."""
    counted = np.isfinite(values) if present is None else np.isfinite(values) & present
    finite = values[counted]
    if finite.size == 0:
        raise RenderError("the pixels hold no finite value")
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        return np.full(values.shape, 127.0)
    return (values - low) * (255.0 / (high - low))


def _to_8bit(pixels: np.ndarray[Any, Any], bits: int | None = None) -> np.ndarray[Any, Any]:
    """Colour samples of ``bits`` significant bits (default: the dtype's) as 0-255."""
    if pixels.dtype == np.uint8:
        return pixels
    depth = bits if bits is not None else 8 * pixels.dtype.itemsize
    shift = max(depth - 8, 0)
    scaled: np.ndarray[Any, Any] = np.clip(pixels.astype(np.int64) >> shift, 0, 255)
    return scaled.astype(np.uint8)
