"""PNG / JPEG / TIFF pictures through Pillow (chest X-rays published as pictures, label masks).

Pictures have no physical spacing: the affine is the 3x3 identity (1 mm per pixel) and
``Image.spacing_known`` is False (``source.format`` is ``"png"``, ``"jpeg"`` or ``"tiff"``).

Reading (``(y, x)`` arrays):

* greyscale ``L`` -> uint8, 16-bit greyscale PNG/TIFF -> uint16 (kept), 32-bit int/float kept;
* colour (RGB, RGBA, palette, CMYK, ...) -> greyscale with Pillow's ``convert("L")``
  (ITU-R 601-2 luma), logged; an alpha channel is dropped;
* ``kind="label"``: palette images give their palette indices, greyscale their values; a colour
  image is accepted only when its channels are equal (else :class:`InputError`).

Writing (``.png``, 2-D only): labels as uint8 (max <= 255) or uint16; intensities that are already
uint8 unchanged, anything else mapped linearly from [min, max] of the finite values to [0, 255]
and rounded (a constant image becomes 0).
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path

import numpy as np

from medseg.errors import ExportError, InputError
from medseg.image import Image, ImageKind, ImageSource
from medseg.io._common import (
    MAX_VOXELS,
    as_label_array,
    check_finite,
    check_image,
    native_byte_order,
    reader_guard,
)
from medseg.io.formats import FORMATS

__all__ = ["PICTURE_SUFFIXES", "read_picture", "write_png", "to_uint8"]

log = logging.getLogger(__name__)

PICTURE_SUFFIXES = {s: {".jpg": "jpeg", ".tif": "tiff"}.get(s, s.lstrip(".")) for s in FORMATS["picture"].suffixes}
_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "TIFF": "tiff"}


@reader_guard(InputError, "picture")
def read_picture(path: str | PathLike[str], *, kind: ImageKind = "intensity", modality: str = "OT") -> Image:
    """Read a PNG/JPEG/TIFF picture as a 2-D image (see the module docstring).

    The declared size is checked before decoding: at most Pillow's decompression-bomb limit
    (``PIL.Image.MAX_IMAGE_PIXELS`` x 2, about 179 Mpixel) and :data:`~medseg.io._common.MAX_VOXELS`.
    """
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    p = Path(path)
    try:
        with PILImage.open(p) as pic:
            fmt = _FORMATS.get(pic.format or "", PICTURE_SUFFIXES.get(p.suffix.lower(), "png"))
            width, height = pic.size
            if width < 1 or height < 1 or width * height > MAX_VOXELS:
                raise InputError(
                    f"the {pic.format} header declares {width} x {height} pixels",
                    path=p,
                    hint="the file is corrupt; save the picture again",
                )
            pages = int(getattr(pic, "n_frames", 1))
            if pages > 1:
                raise InputError(
                    f"a multi-page {pic.format} ({pages} pages); medseg reads single 2-D pictures",
                    path=p,
                    hint="save each page as its own file",
                )
            pic.load()
            array = _to_array(pic, p, kind)
    except InputError:
        raise
    except UnidentifiedImageError as e:
        raise InputError("not a picture Pillow can read", path=p, hint="pass a PNG, JPEG or TIFF file") from e
    except MemoryError:
        raise
    except PILImage.DecompressionBombError as e:
        raise InputError(
            f"the picture declares more pixels than Pillow decodes safely ({' '.join(str(e).split())[:160]})",
            path=p,
            hint="the header is corrupt, or downsample the picture first",
        ) from e
    except Exception as e:  # noqa: BLE001 - Pillow's plugins raise many types on corrupt files
        raise InputError(
            f"cannot read the picture, it is truncated or corrupt ({type(e).__name__}: {' '.join(str(e).split())[:200]})",
            path=p,
            hint="copy the file again",
        ) from e
    array = native_byte_order(array)
    check_finite(array, p)
    check_image(array, np.eye(3), p, "the picture")
    if kind == "label":
        array = as_label_array(array, p)
    return Image(array, np.eye(3), kind, modality, ImageSource(path=p, format=fmt))


def _to_array(pic, path: Path, kind: ImageKind) -> np.ndarray:  # pic: PIL.Image.Image
    mode = pic.mode
    if mode in ("L", "I", "F") or mode.startswith("I;16"):
        array = np.asarray(pic)
        if mode == "I" and array.size and array.min() >= 0 and array.max() <= 65535 and pic.format == "PNG":
            array = array.astype(np.uint16)  # older Pillow opens 16-bit PNG as 32-bit "I"
        return array
    if mode == "1":
        return np.asarray(pic, dtype=np.uint8)
    if kind == "label":
        if mode == "P":
            return np.asarray(pic)
        rgb = np.asarray(pic.convert("RGB"))
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise InputError(
                f"a colour ({mode}) picture cannot be read as a label map",
                path=path,
                hint="save the mask as a greyscale or palette PNG whose values are the labels",
            )
        return rgb[..., 0].copy()
    if mode == "LA":
        log.info("%s: dropping the alpha channel", path)
        return np.asarray(pic.getchannel("L"))
    log.info("%s: %s picture converted to greyscale (ITU-R 601-2 luma)", path, mode)
    return np.asarray(pic.convert("L"))


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Map intensities to uint8: uint8 unchanged, else [min, max] of finite values -> [0, 255]."""
    if array.dtype == np.uint8:
        return array
    a = np.asarray(array, dtype=np.float64)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, np.uint8)
    lo, hi = float(a[finite].min()), float(a[finite].max())
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    scaled = (np.where(finite, a, lo) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def write_png(image: Image, path: Path) -> None:
    """Write a 2-D image as PNG (rules in the module docstring)."""
    from PIL import Image as PILImage

    if image.ndim != 2:
        raise ExportError(
            f"PNG holds 2-D images, this one is {image.ndim}-D {image.shape}",
            path=path,
            hint="write .nii.gz/.mha for volumes, or pick one slice (image.array[k])",
        )
    arr = image.array
    if image.kind == "label":
        if arr.size and int(arr.min()) < 0:
            raise ExportError("a label image with negative values cannot be written as PNG", path=path)
        hi = int(arr.max()) if arr.size else 0
        if hi > 65535:
            raise ExportError(
                f"label values up to {hi} do not fit a 16-bit PNG", path=path, hint="write .nii.gz"
            )
        out = np.ascontiguousarray(arr, dtype=np.uint8 if hi <= 255 else np.uint16)
    else:
        out = np.ascontiguousarray(to_uint8(arr))
    try:
        # zlib level 1 for label maps: lossless either way, 2.4x faster than the default on a 2000 x 2000 film
        PILImage.fromarray(out).save(path, format="PNG", compress_level=1 if image.kind == "label" else 6)
    except (OSError, ValueError) as e:
        raise ExportError(f"Pillow could not write the PNG ({e})", path=path) from e
