"""MetaImage (``.mha``/``.mhd``, used by LUNA16) and NRRD (``.nrrd``/``.nhdr``) through SimpleITK.

SimpleITK already works in LPS with the same array order as :class:`~medseg.image.Image`, so no
axis or sign change happens here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from os import PathLike
from pathlib import Path

import numpy as np

from medseg.errors import ExportError, InputError
from medseg.image import Image, ImageKind, ImageSource
from medseg.io._common import (
    as_label_array,
    check_finite,
    check_image,
    check_payload,
    check_voxel_count,
    reader_guard,
    smallest_int_dtype,
)
from medseg.io.formats import FORMATS

__all__ = ["ITK_SUFFIXES", "read_itk", "write_itk"]

log = logging.getLogger(__name__)

ITK_SUFFIXES = {s: s.lstrip(".").replace("nhdr", "nrrd") for s in FORMATS["itk"].suffixes}
_MET_MODALITY = {"MET_MOD_CT": "CT", "MET_MOD_MR": "MR", "MET_MOD_NM": "NM", "MET_MOD_US": "US"}


@reader_guard(InputError, "image file")
def read_itk(
    path: str | PathLike[str], *, kind: ImageKind = "intensity", modality: str | None = None
) -> Image:
    """Read a 2-D or 3-D scalar MetaImage/NRRD file (a singleton 4th axis is dropped).

    Returns:
        :class:`Image` ``(y, x)`` or ``(z, y, x)`` with the file's LPS geometry. The modality is
        ``modality`` if given, else the MetaImage ``Modality`` field when set, else ``"OT"``.
    """
    import SimpleITK as sitk

    p = Path(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
        _check_declared_size(reader, p)
        img = reader.Execute()
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise InputError(
            f"SimpleITK cannot read the file, it is truncated or corrupt ({first})",
            path=p,
            hint="write the file again (for .mhd also check its data file)",
        ) from e
    if img.GetDimension() == 4 and img.GetSize()[3] == 1:
        img = img[:, :, :, 0]
    if img.GetDimension() not in (2, 3):
        raise InputError(
            f"a {img.GetDimension()}-D image of size {img.GetSize()}; medseg reads 2-D or 3-D images",
            path=p,
            hint="extract one 3-D volume first",
        )
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"a vector/colour image with {img.GetNumberOfComponentsPerPixel()} components per pixel",
            path=p,
            hint="convert it to a scalar (greyscale) image first",
        )
    if modality is None:
        modality = "OT"
        if img.HasMetaDataKey("Modality"):
            modality = _MET_MODALITY.get(img.GetMetaData("Modality").strip(), "OT")
    array = sitk.GetArrayFromImage(img)
    check_finite(array, p)
    if kind == "label":
        array = as_label_array(array, p)
    n = img.GetDimension()
    affine = np.eye(n + 1)
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(n, n)
    affine[:n, :n] = direction * np.asarray(img.GetSpacing())[None, :]
    affine[:n, n] = img.GetOrigin()
    fmt = ITK_SUFFIXES.get(p.suffix.lower(), "mha")
    check_image(array, affine, p, "the header geometry (ElementSpacing/Offset/TransformMatrix, or NRRD space)")
    return Image(array, affine, kind, modality, ImageSource(path=p, format=fmt))


def _check_declared_size(reader, path: Path) -> None:  # reader: SimpleITK.ImageFileReader
    """Refuse an empty or absurd declared size before SimpleITK allocates it; for an uncompressed
    single-file image (``.mha``, attached ``.nrrd``) also more bytes than the file holds."""
    import SimpleITK as sitk

    size = reader.GetSize()
    voxels = check_voxel_count(size, path, f"the header size {tuple(size)}")
    components = max(1, int(reader.GetNumberOfComponents()))
    itemsize = np.dtype(sitk.GetArrayViewFromImage(sitk.Image([1] * len(size), reader.GetPixelID())).dtype).itemsize
    need = voxels * components * itemsize
    if path.suffix.lower() in (".mha", ".nrrd"):
        head = path.read_bytes()[:4096].lower()
        compressed = b"compresseddata = true" in head or b"encoding: gzip" in head or b"encoding: gz" in head
        raw = b"encoding: raw" in head or (b"elementdatafile = local" in head and not compressed)
        if raw or compressed:
            check_payload(need, path.stat().st_size, path, "the declared size x pixel type", compressed=compressed)


def _itk_array(image: Image) -> np.ndarray:
    arr = image.array
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if image.kind == "label" and arr.size:
        return arr.astype(smallest_int_dtype(int(arr.min()), int(arr.max())), copy=False)
    if arr.dtype == np.float16:
        return arr.astype(np.float32)
    return arr


def write_itk(image: Image, path: Path, *, final: Path | None = None, compress: bool) -> None:
    """Write ``image`` as ``.mha``, ``.mhd`` (+ ``.raw``/``.zraw``) or ``.nrrd`` to ``path``.

    ``path`` may be a temporary path (atomic writing) whose file is renamed to ``final`` later; for
    ``.mhd`` the data file is named after ``final`` (the header refers to it by name) and moved
    beside it before the header is written to ``path``.
    """
    import SimpleITK as sitk

    src = image.with_array(_itk_array(image))
    img = src.to_sitk()
    try:
        if path.suffix.lower() != ".mhd":
            sitk.WriteImage(img, str(path), useCompression=compress)
            return
        # MetaImage header + data file: the header refers to the data file by name, so both are
        # written under the final name in a scratch folder, the data file moved into place first.
        final = final or path
        scratch = Path(tempfile.mkdtemp(prefix=".mhd.", dir=path.parent))
        try:
            header = scratch / final.name
            sitk.WriteImage(img, str(header), useCompression=compress)
            for data_file in scratch.iterdir():
                if data_file != header:
                    os.replace(data_file, final.parent / data_file.name)
            os.replace(header, path)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except RuntimeError as e:
        with contextlib.suppress(OSError):
            path.unlink()
        raise ExportError(
            f"SimpleITK could not write the image ({str(e).strip().splitlines()[-1]})", path=path
        ) from e
