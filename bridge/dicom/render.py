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

Pixels are decoded by pydicom (compressed forms only where a decoder is installed: Pillow
decodes baseline JPEG and JPEG 2000). Whatever fails, the caller gets one
:class:`~bridge.errors.RenderError` saying why, and shows a placeholder instead.
"""

from __future__ import annotations

import io
import math
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


def thumbnail_png(ds: Dataset, max_size: int = 128, *, source: str | None = None) -> bytes:
    """The PNG bytes of a picture of ``ds`` at most ``max_size`` pixels on its longer side.

    ``source`` names the object in a :class:`RenderError` (default: its SOP Instance UID).
    """
    if max_size < 1:
        raise ValueError(f"max_size must be at least 1, not {max_size}")
    image = render(ds, source=source)
    image.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def render(ds: Dataset, *, source: str | None = None) -> Image.Image:
    """A picture of ``ds`` (mode ``L`` for grey, ``RGB`` for colour) at its own size."""
    where = source or f"instance {ds.get('SOPInstanceUID', '(no SOP Instance UID)')}"
    if "PixelData" not in ds:
        raise RenderError("the object has no Pixel Data (7FE0,0010)", source=where)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    try:
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


def _grey(pixels: np.ndarray[Any, Any], ds: Dataset, *, invert: bool) -> np.ndarray[Any, Any]:
    """Grey pixels through the Modality LUT and the first VOI transform to 0-255."""
    if pixels.ndim != 2:
        raise RenderError(f"grey-scale pixels of shape {pixels.shape} are not one image")
    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    window = _window(ds)
    if window is not None:
        out = _apply_window(values, *window, str(ds.get("VOILUTFunction", "LINEAR")))
    elif "VOILUTSequence" in ds:
        out = _stretch(np.asarray(apply_voi_lut(pixels, ds, index=0), dtype=np.float64))
    else:
        out = _stretch(values)
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


def _stretch(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The image's own minimum to maximum on 0-255 (a flat image is mid-grey)."""
    finite = values[np.isfinite(values)]
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
