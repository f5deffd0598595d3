"""Thumbnails (bridge/dicom/render.py): what the object says a reader should see."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from bridge.dicom.render import render, thumbnail_png
from bridge.errors import ConversionError, RenderError


def _grey_dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2", **extra: object) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    for name, value in extra.items():
        setattr(ds, name, value)
    ds.PixelData = pixels.astype("<u2").tobytes()
    return ds


def _decoded(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def test_the_window_of_the_object_is_applied():
    # a ramp 0..1000; window 500/200 (LINEAR): <= 400 black, > 599 white, 500 mid-grey
    ramp = np.tile(np.arange(0, 1001, 10, dtype=np.uint16), (4, 1))
    ds = _grey_dataset(ramp, WindowCenter=500, WindowWidth=200)
    out = np.asarray(render(ds))
    assert out.dtype == np.uint8 and out.shape == ramp.shape
    assert (out[:, ramp[0] <= 400] == 0).all()
    assert (out[:, ramp[0] >= 600] == 255).all()
    assert abs(int(out[0, 50]) - 128) <= 1  # value 500


def test_without_a_window_the_image_is_stretched_and_monochrome1_inverted():
    ramp = np.tile(np.arange(100, 356, dtype=np.uint16), (2, 1))  # 256 values
    mono2 = np.asarray(render(_grey_dataset(ramp)))
    mono1 = np.asarray(render(_grey_dataset(ramp, "MONOCHROME1")))
    assert mono2[0, 0] == 0 and mono2[0, -1] == 255
    assert (mono1 == 255 - mono2).all()


def test_rescale_comes_before_the_window():
    # stored 0..2000 with intercept -1000: the window 0/2 selects stored value 1000 only
    ramp = np.array([[0, 999, 1000, 1001, 2000]], dtype=np.uint16)
    ds = _grey_dataset(
        ramp, RescaleSlope=1, RescaleIntercept=-1000, WindowCenter=0.5, WindowWidth=2
    )
    out = np.asarray(render(ds))[0]
    assert out[0] == 0 and out[1] == 0 and out[-1] == 255


def test_a_flat_image_is_mid_grey_not_an_error():
    out = np.asarray(render(_grey_dataset(np.full((3, 3), 7, dtype=np.uint16))))
    assert (out == 127).all()


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("CT_small.dcm", "L"),
        ("MR_small_bigendian.dcm", "L"),
        ("examples_palette.dcm", "RGB"),
        ("examples_rgb_color.dcm", "RGB"),
        ("SC_ybr_full_422_uncompressed.dcm", "RGB"),
        ("SC_rgb_rle_2frame.dcm", "RGB"),
        ("JPEG2000.dcm", "L"),
    ],
)
def test_real_objects_give_a_real_thumbnail(name, mode):
    ds = pydicom.dcmread(get_testdata_file(name))
    image = _decoded(thumbnail_png(ds, max_size=64))
    assert image.mode == mode
    assert max(image.size) <= 64
    pixels = np.asarray(image).reshape(-1, 1 if mode == "L" else 3)
    assert len(np.unique(pixels, axis=0)) > 4, "the picture is not blank"


def test_the_palette_is_used():
    ds = pydicom.dcmread(get_testdata_file("examples_palette.dcm"))
    rgb = np.asarray(render(ds))
    # a palette image drawn as colour: some pixels differ between channels
    assert (rgb[..., 0] != rgb[..., 2]).any()


def test_the_middle_frame_of_a_multiframe_object():
    frames = np.stack([np.full((4, 4), v, dtype=np.uint16) for v in (0, 100, 4000)])
    ds = _grey_dataset(frames[0], WindowCenter=2000, WindowWidth=4000)
    ds.NumberOfFrames = 3
    ds.PixelData = frames.astype("<u2").tobytes()
    out = np.asarray(render(ds))
    assert out.shape == (4, 4)
    assert (out == out[0, 0]).all() and 0 < out[0, 0] < 20  # frame 1 (value 100)


def test_objects_without_pixels_give_a_render_error():
    ds = pydicom.dcmread(get_testdata_file("rtplan.dcm"))
    with pytest.raises(RenderError, match="no Pixel Data"):
        render(ds)
    assert issubclass(RenderError, ConversionError)


def test_pixels_shorter_than_the_header_give_a_render_error():
    ds = _grey_dataset(np.zeros((8, 8), dtype=np.uint16))
    ds.PixelData = ds.PixelData[:20]
    with pytest.raises(RenderError, match="cannot be drawn"):
        thumbnail_png(ds)
