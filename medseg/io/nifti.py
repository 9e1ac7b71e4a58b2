"""NIfTI (``.nii``, ``.nii.gz``) reading and writing with nibabel.

NIfTI stores world coordinates in **RAS** (+x Right, +y Anterior, +z Superior); medseg works in
DICOM **LPS**. The only place where the two meet is :func:`ras_lps_flip` (negate x and y); it is its
own inverse and is used both on reading and on writing.

Which NIfTI affine is used: the sform when its code is non-zero and it has no shear, else the qform
when its code is non-zero; a sheared sform without a qform is refused (:class:`GeometryError`); with
both codes 0 the voxel sizes alone are used, with a warning. When sform and qform are both set and disagree
by more than 1e-3 mm, the sform wins and a warning is logged (nibabel's rule; ITK may pick the qform).
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path

import numpy as np

from medseg.errors import ExportError, GeometryError, InputError
from medseg.image import Image, ImageKind, ImageSource
from medseg.io._common import (
    as_label_array,
    check_finite,
    check_image,
    check_payload,
    check_voxel_count,
    native_byte_order,
    reader_guard,
    smallest_int_dtype,
)

__all__ = ["ras_lps_flip", "read_nifti", "write_nifti"]

log = logging.getLogger(__name__)

_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def ras_lps_flip(affine: np.ndarray) -> np.ndarray:
    """Convert a 4x4 voxel-to-world affine between RAS (NIfTI) and LPS (DICOM/ITK): negate x, y.

    Self-inverse: ``ras_lps_flip(ras_lps_flip(a)) == a``.
    """
    return _FLIP @ np.asarray(affine, dtype=np.float64)


def _is_orthogonal(affine: np.ndarray) -> bool:
    m = affine[:3, :3]
    norms = np.linalg.norm(m, axis=0)
    if (norms == 0).any():
        return False
    u = m / norms
    return bool(np.allclose(u.T @ u, np.eye(3), atol=1e-4))


def _ras_affine(img, path: Path) -> np.ndarray:  # img: nibabel.Nifti1Image | Nifti2Image
    header = img.header
    sform, scode = header.get_sform(coded=True)
    try:
        qform, qcode = header.get_qform(coded=True)
    except Exception as e:  # noqa: BLE001 - nibabel raises ValueError/... for an impossible quaternion
        if not (scode and sform is not None and _is_orthogonal(sform)):
            raise GeometryError(
                f"the NIfTI qform cannot be used ({' '.join(str(e).split())}: quatern_b/c/d, pixdim[0]) "
                "and there is no usable sform",
                path=path,
                hint="the header is corrupt; write the file again",
            ) from e
        log.warning("%s: the qform is invalid (%s); using the sform", path, e)
        qform, qcode = None, 0
    if (
        scode
        and qcode
        and sform is not None
        and qform is not None
        and not np.allclose(sform, qform, atol=1e-3)
    ):
        log.warning("%s: sform and qform differ; using the sform", path)
    if scode and sform is not None and _is_orthogonal(sform):
        return np.asarray(sform, dtype=np.float64)
    if qcode and qform is not None:
        if scode:
            log.warning("%s: the sform is sheared; using the qform", path)
        return np.asarray(qform, dtype=np.float64)
    if scode:
        raise GeometryError(
            "the NIfTI sform is sheared and there is no qform; medseg needs an orthogonal grid",
            path=path,
            hint="resample the image to an orthogonal grid first",
        )
    log.warning("%s: no qform/sform (both codes 0); using the voxel sizes only", path)
    return np.asarray(header.get_base_affine(), dtype=np.float64)


@reader_guard(InputError, "NIfTI file")
def read_nifti(path: str | PathLike[str], *, kind: ImageKind = "intensity", modality: str = "OT") -> Image:
    """Read a 3-D NIfTI image into LPS.

    A singleton 4th (and higher) dimension is dropped; a 2-D file (``dim[0] == 2``, e.g. a radiograph
    written by :func:`write_nifti`) gives a 2-D image with a 3x3 in-plane affine. The data are
    scaled with ``scl_slope``/``scl_inter`` when set (nibabel), else kept in their stored dtype.

    Returns:
        :class:`Image` with array ``(z, y, x)`` (C-contiguous; NIfTI's Fortran order transposed
        without a copy) and a 4x4 LPS affine.

    Raises:
        InputError: unreadable/truncated file, NaN/inf voxels, real 4-D data, non-integer labels.
    """
    import nibabel as nib

    p = Path(path)
    try:
        img = nib.load(str(p))
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise InputError(f"not a NIfTI-1/2 image ({type(img).__name__})", path=p)
        _check_declared_size(img, p)
        data = np.asanyarray(img.dataobj)
    except InputError:
        raise
    except ValueError as e:
        if "w2 should be positive" not in str(e):  # nibabel's message for an impossible quaternion
            raise InputError(
                f"cannot read the NIfTI file, it is truncated or corrupt ({type(e).__name__}: {' '.join(str(e).split())})",
                path=p,
                hint="write the file again",
            ) from e
        raise GeometryError(
            "the NIfTI qform quaternion (quatern_b/c/d) is impossible and there is no usable sform",
            path=p,
            hint="the header is corrupt; write the file again",
        ) from e
    except Exception as e:
        raise InputError(
            f"cannot read the NIfTI file, it is truncated or corrupt ({type(e).__name__}: {' '.join(str(e).split())})",
            path=p,
            hint="write the file again",
        ) from e
    data = native_byte_order(np.asarray(data))
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    two_d = data.ndim == 2
    if two_d:
        data = data[:, :, None]
    if data.ndim != 3:
        raise InputError(
            f"a {data.ndim}-D NIfTI image of shape {data.shape} (x, y, z, t, ...); medseg reads 3-D volumes",
            path=p,
            hint="split the time/channel axis first (e.g. fslsplit) and pass one 3-D volume",
        )
    if data.dtype.kind == "c" or data.dtype.fields is not None:
        raise InputError(
            f"unsupported NIfTI data type {data.dtype}", path=p, hint="save as a real scalar type"
        )
    check_finite(data, p)
    array = data.transpose(2, 1, 0)  # (x, y, z) -> (z, y, x); C-contiguous when the file was F-ordered
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    if kind == "label":
        array = as_label_array(array, p)
    affine = ras_lps_flip(_ras_affine(img, p))
    what = "the NIfTI geometry (pixdim, qform/sform)"
    if two_d:  # keep a radiograph 2-D: the in-plane part of the affine, no fake third spacing
        plane = np.eye(3)
        plane[:2, :2] = affine[:2, :2]
        plane[:2, 2] = affine[:2, 3]
        check_image(array[0], plane, p, what)
        return Image(array[0], plane, kind, modality, ImageSource(path=p, format="nifti"))
    check_image(array, affine, p, what)
    return Image(array, affine, kind, modality, ImageSource(path=p, format="nifti"))


def _check_declared_size(img, path: Path) -> None:  # img: nibabel.Nifti1Image | Nifti2Image
    """Refuse a header whose dim/datatype declare an empty or absurd image, or more bytes than the
    file holds (``.nii``) or than its compressed bytes can expand to (``.nii.gz``), before nibabel
    allocates anything."""
    header = img.header
    shape = header.get_data_shape()
    voxels = check_voxel_count(shape, path, f"dim {tuple(int(v) for v in shape)}")
    need = voxels * header.get_data_dtype().itemsize + int(header.get_data_offset())
    size = path.stat().st_size
    with open(path, "rb") as fp:
        gz = fp.read(2) == b"\x1f\x8b"
    check_payload(need, size, path, "dim x datatype (plus vox_offset)", compressed=gz)


def _nifti_dtype(image: Image) -> np.dtype:
    arr = image.array
    if arr.dtype == bool:
        return np.dtype(np.uint8)
    if image.kind == "label" or arr.dtype == np.int64 or arr.dtype == np.uint64:
        if arr.size == 0:
            return np.dtype(np.uint8)
        lo, hi = int(arr.min()), int(arr.max())
        dt = smallest_int_dtype(lo, hi)
        if image.kind != "label" and dt == np.int64:
            return np.dtype(np.float64)
        return dt
    if arr.dtype == np.float16:
        return np.dtype(np.float32)
    return arr.dtype


def write_nifti(image: Image, path: Path) -> None:
    """Write ``image`` to ``path`` (``.nii``/``.nii.gz``; not atomic, the caller handles that).

    A 2-D image is written as a 2-D NIfTI (``dim[0] == 2``) with its in-plane affine embedded (z step
    1 mm), so it reads back 2-D. qform and sform are both set (code 1, scanner) to the same RAS affine.
    """
    import nibabel as nib

    if image.ndim == 2:
        affine = np.eye(4)
        affine[:2, :2] = image.affine[:2, :2]
        affine[:2, 3] = image.affine[:2, 2]
        data = image.array[None]
    else:
        affine = image.affine
        data = image.array
    dtype = _nifti_dtype(image)
    data = data if data.dtype == dtype else data.astype(dtype)
    try:
        arr = data.transpose(2, 1, 0)
        out = nib.Nifti1Image(arr[:, :, 0] if image.ndim == 2 else arr, ras_lps_flip(affine), dtype=dtype)
        out.set_qform(out.affine, code=1)
        out.set_sform(out.affine, code=1)
        out.header.set_xyzt_units("mm")
        nib.save(out, str(path))
    except Exception as e:
        raise ExportError(f"nibabel could not write the image ({type(e).__name__}: {e})", path=path) from e
