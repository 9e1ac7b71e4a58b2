"""One immutable image type for every radiograph, CT volume and mask.

Conventions (the same as SimpleITK / ITK, so conversions are exact):

* ``array`` is a numpy array in **reversed index order**: ``(rows, cols)`` = ``(y, x)`` for a 2-D
  radiograph, ``(slices, rows, cols)`` = ``(z, y, x)`` for a 3-D volume. ``array[k, j, i]`` is the
  voxel with index ``(i, j, k)``.
* ``affine`` maps a voxel index **in (i, j, k) = (x, y, z) order** (column, row, slice) to patient
  coordinates in millimetres in **LPS** (DICOM patient space: +x towards the patient's Left, +y
  Posterior, +z Superior). For 3-D it is 4x4; for a 2-D radiograph it is 3x3 and maps
  ``(col, row, 1)`` to millimetres in the detector/image plane (no fake third spacing).
* ``spacing``, ``origin`` and ``direction`` are in index order (x, y[, z]) like SimpleITK.

An :class:`Image` has no file access; :mod:`medseg.io` reads and writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from medseg.errors import GeometryError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import pydicom
    import SimpleITK as sitk
    import torch

__all__ = [
    "Image",
    "ImageSource",
    "ImageKind",
    "affine_from_geometry",
    "orientation_code",
    "row_direction",
    "patient_left_sign",
    "present_labels",
    "label_boxes",
]

ImageKind = Literal["intensity", "label"]
_KINDS = ("intensity", "label")


@dataclass(frozen=True, eq=False)
class ImageSource:
    """Where an image came from.

    Attributes:
        path: the file or folder it was read from (``None`` for images made in memory).
        format: ``"dicom"``, ``"nifti"``, ``"mha"``, ``"nrrd"``, ``"png"``, ... or ``"memory"``.
        datasets: for DICOM, the header datasets **without pixel data**, one per slice in slice
            order (index ``k`` of the array); one dataset for a radiograph or a multi-frame file.
        files: for DICOM, the file of each dataset, same order.
        spacing_tag: for radiographs, which attribute gave the pixel spacing
            (``"PixelSpacing"``, ``"ImagerPixelSpacing"``, ``"NominalScannedPixelSpacing"``), or
            ``None`` when no spacing is known and 1 mm was assumed.
    """

    path: Path | None = None
    format: str = "memory"
    datasets: tuple[pydicom.Dataset, ...] = ()
    files: tuple[Path, ...] = ()
    spacing_tag: str | None = None

    @property
    def is_dicom(self) -> bool:
        return bool(self.datasets)

    def _first(self, keyword: str) -> str | None:
        if not self.datasets:
            return None
        value = getattr(self.datasets[0], keyword, None)
        return None if value in (None, "") else str(value)

    @property
    def study_instance_uid(self) -> str | None:
        return self._first("StudyInstanceUID")

    @property
    def series_instance_uid(self) -> str | None:
        return self._first("SeriesInstanceUID")

    @property
    def frame_of_reference_uid(self) -> str | None:
        return self._first("FrameOfReferenceUID")

    @property
    def sop_instance_uids(self) -> tuple[str, ...]:
        """SOP Instance UIDs in slice order (one per dataset)."""
        return tuple(str(ds.SOPInstanceUID) for ds in self.datasets)


def affine_from_geometry(
    spacing: Sequence[float], origin: Sequence[float], direction: np.ndarray | Sequence[float]
) -> np.ndarray:
    """Build the (n+1)x(n+1) affine from SimpleITK-style spacing, origin and direction.

    ``direction`` is n x n (or flat, row-major) with the unit direction of index axis ``i`` in
    column ``i``.
    """
    n = len(spacing)
    d = np.asarray(direction, dtype=np.float64).reshape(n, n)
    affine = np.eye(n + 1)
    affine[:n, :n] = d * np.asarray(spacing, dtype=np.float64)[None, :]
    affine[:n, n] = np.asarray(origin, dtype=np.float64)
    return affine


def orientation_code(direction: np.ndarray) -> str:
    """Three-letter code of the patient direction each index axis points to, e.g. ``"LPS"``.

    ``direction`` is the 3x3 direction matrix (columns = index axes) in LPS. Axis ``i`` gets the
    letter of the dominant component of column ``i``: L/R for x, P/A for y, S/I for z.
    """
    letters = (("L", "R"), ("P", "A"), ("S", "I"))
    out = []
    for col in np.asarray(direction, dtype=np.float64).T:
        axis = int(np.argmax(np.abs(col)))
        out.append(letters[axis][0] if col[axis] > 0 else letters[axis][1])
    return "".join(out)


@dataclass(frozen=True, eq=False)
class Image:
    """An image or label map with its geometry. Immutable: the array is made read-only.

    Attributes:
        array: ``(y, x)`` for 2-D radiographs, ``(z, y, x)`` for volumes (see module docstring).
        affine: index ``(x, y[, z])`` -> LPS millimetres; 3x3 for 2-D, 4x4 for 3-D.
        kind: ``"intensity"`` (HU for CT, display values for radiographs) or ``"label"``
            (integer label map, 0 = background).
        modality: DICOM modality code (``"CT"``, ``"CR"``, ``"DX"``, ``"MR"``, ``"OT"``, ...).
        source: provenance; for DICOM the headers needed to export results into the study.
    """

    array: np.ndarray
    affine: np.ndarray
    kind: ImageKind = "intensity"
    modality: str = "OT"
    source: ImageSource = field(default_factory=ImageSource)

    def __post_init__(self) -> None:
        array = np.asarray(self.array)
        if array.ndim not in (2, 3):
            raise GeometryError(
                f"an Image must be 2-D (y, x) or 3-D (z, y, x), got shape {array.shape}",
                hint="squeeze channel axes or pick one frame before building the Image",
            )
        if self.kind not in _KINDS:
            raise InputError(f"kind must be one of {_KINDS}, got {self.kind!r}")
        if self.kind == "label" and not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
            raise InputError(
                f"a label image needs an integer array, got {array.dtype}",
                hint="round and cast the mask (e.g. array.astype(np.uint8))",
            )
        affine = np.array(self.affine, dtype=np.float64)
        n = array.ndim
        if affine.shape != (n + 1, n + 1):
            raise GeometryError(f"a {n}-D image needs a {n + 1}x{n + 1} affine, got {affine.shape}")
        if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:n, :n])) < 1e-12:
            raise GeometryError("the affine is singular or not finite", hint="check spacing and direction")
        if not array.flags.writeable and array.base is not None:
            array = array.copy()
        array = array.view()
        array.flags.writeable = False
        affine.flags.writeable = False
        object.__setattr__(self, "array", array)
        object.__setattr__(self, "affine", affine)

    # ---- geometry -------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return int(self.array.ndim)

    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape, ``(y, x)`` or ``(z, y, x)``."""
        return tuple(int(s) for s in self.array.shape)

    @property
    def size(self) -> tuple[int, ...]:
        """Size in index order ``(x, y[, z])``, as SimpleITK's ``GetSize``."""
        return tuple(reversed(self.shape))

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel spacing in mm in index order ``(x, y[, z])``."""
        n = self.ndim
        return tuple(float(v) for v in np.linalg.norm(self.affine[:n, :n], axis=0))

    @property
    def origin(self) -> tuple[float, ...]:
        """Position (mm, LPS) of the centre of voxel index 0."""
        n = self.ndim
        return tuple(float(v) for v in self.affine[:n, n])

    @property
    def direction(self) -> np.ndarray:
        """``n x n`` matrix whose column ``i`` is the unit direction of index axis ``i``."""
        n = self.ndim
        return self.affine[:n, :n] / np.asarray(self.spacing)[None, :]

    @property
    def orientation(self) -> str:
        """Orientation code such as ``"LPS"`` (3-D) or ``"LP"`` (2-D plane, approximate)."""
        if self.ndim == 3:
            return orientation_code(self.direction)
        return orientation_code(np.pad(self.direction, ((0, 1), (0, 1))) + np.diag([0, 0, 1]))[:2]

    @property
    def spacing_known(self) -> bool:
        """False for pictures (PNG/JPEG) and DICOM without any pixel spacing (1 mm assumed)."""
        if self.source.format in ("png", "jpeg", "tiff"):
            return False
        if self.ndim == 2 and self.source.is_dicom:
            return self.source.spacing_tag is not None
        return True

    def index_to_world(self, index: np.ndarray | Sequence[float]) -> np.ndarray:
        """Map voxel indices ``(..., n)`` in ``(x, y[, z])`` order to LPS mm ``(..., n)``."""
        idx = np.asarray(index, dtype=np.float64)
        n = self.ndim
        return idx @ self.affine[:n, :n].T + self.affine[:n, n]

    def world_to_index(self, point: np.ndarray | Sequence[float]) -> np.ndarray:
        """Map LPS mm points ``(..., n)`` to continuous voxel indices in ``(x, y[, z])`` order."""
        p = np.asarray(point, dtype=np.float64)
        n = self.ndim
        inv = np.linalg.inv(self.affine)
        return p @ inv[:n, :n].T + inv[:n, n]

    @property
    def voxel_volume(self) -> float:
        """Voxel volume in mm^3 (3-D) or pixel area in mm^2 (2-D)."""
        return float(np.prod(self.spacing))

    def same_geometry(self, other: Image, atol: float = 1e-4) -> bool:
        """True when both images have the same shape and affine (to ``atol`` mm)."""
        return self.shape == other.shape and np.allclose(self.affine, other.affine, atol=atol)

    # ---- derived images ---------------------------------------------------------------------
    def with_array(self, array: np.ndarray, *, kind: ImageKind | None = None) -> Image:
        """A new Image on the same geometry and provenance with another array of the same shape."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise GeometryError(f"array shape {array.shape} does not match image shape {self.shape}")
        return replace(self, array=array, kind=kind or self.kind)

    def replace(self, **changes: Any) -> Image:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    # ---- conversions ------------------------------------------------------------------------
    def to_sitk(self) -> sitk.Image:
        """A SimpleITK image with the same voxels, spacing, origin and direction (LPS)."""
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(tuple(float(v) for v in self.direction.ravel()))
        return img

    @classmethod
    def from_sitk(
        cls,
        img: sitk.Image,
        *,
        kind: ImageKind = "intensity",
        modality: str = "OT",
        source: ImageSource | None = None,
    ) -> Image:
        """Build an Image from a SimpleITK image (LPS geometry is taken as is)."""
        import SimpleITK as sitk

        if img.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(
                f"expected a scalar image, got {img.GetNumberOfComponentsPerPixel()} components per pixel",
                hint="convert colour images to grey first",
            )
        array = sitk.GetArrayFromImage(img)
        affine = affine_from_geometry(img.GetSpacing(), img.GetOrigin(), img.GetDirection())
        return cls(array, affine, kind, modality, source or ImageSource())

    def to_tensor(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A torch tensor with a leading channel axis: ``(1, y, x)`` or ``(1, z, y, x)``."""
        import torch

        t = torch.from_numpy(np.array(self.array, copy=True))[None]
        return t if dtype is None else t.to(dtype)

    def __repr__(self) -> str:
        arr = self.array
        if arr.size and np.issubdtype(arr.dtype, np.number):
            rng = f"[{float(arr.min()):.6g}, {float(arr.max()):.6g}]"
        else:
            rng = "[]"
        spacing = ", ".join(f"{s:.4g}" for s in self.spacing)
        src = f" {self.source.path}" if self.source.path else ""
        return (
            f"Image({self.kind}, {self.modality}, shape={self.shape} ({'z, y, x' if self.ndim == 3 else 'y, x'}), "
            f"spacing=({spacing}) mm, orientation={self.orientation}, dtype={arr.dtype}, range={rng},"
            f" source={self.source.format}{src})"
        )


def row_direction(image: Image) -> str | None:
    """Patient direction towards which the column index of a DICOM radiograph increases.

    The first letter of DICOM PatientOrientation's row value (``"L"``, ``"R"``, ``"A"``, ``"P"``,
    ``"H"``, ``"F"``), or ``None`` when the image has no DICOM header or the tag is empty.
    """
    if not image.source.datasets:
        return None
    value = getattr(image.source.datasets[0], "PatientOrientation", None)
    if not value or len(value) < 1 or not str(value[0]).strip():
        return None
    letter = str(value[0]).strip()[0].upper()
    return letter if letter in "LRAPHF" else None


def patient_left_sign(image: Image) -> float:
    """+1 when the patient's left lies towards larger x index (column), -1 when towards smaller.

    3-D: from the affine (LPS: +x world is the patient's left). 2-D radiograph: DICOM
    PatientOrientation when it says L or R, else the standard frontal display (patient's left on the
    image right, +1).
    """
    if image.ndim == 3:
        return 1.0 if image.affine[0, 0] >= 0 else -1.0
    return -1.0 if row_direction(image) == "R" else 1.0

# Up to this many candidate values, one vectorised comparison per value is the fastest test
# (a 512x512x300 uint8 mask: ~10 ms per value); beyond it, count all values at once.
_COMPARE_UP_TO = 32


def present_labels(array: np.ndarray) -> list[int]:
    """Sorted values > 0 that occur in a non-negative integer (or bool) label array.

    ``np.unique`` sorts the whole array (seconds for a 512x512x300 volume) and a single
    ``np.bincount`` copies it to int64; this uses ``max`` plus per-value comparisons for few
    labels, and chunked ``bincount`` (about 4 M voxels at a time) for many.
    """
    if array.dtype == bool:
        array = array.view(np.uint8)
    if array.size == 0:
        return []
    high = int(array.max())
    if high <= 0:
        return []
    if high <= _COMPARE_UP_TO:
        return [v for v in range(1, high + 1) if np.any(array == v)]
    counts = np.zeros(high + 1, dtype=np.int64)
    flat = array.reshape(array.shape[0] if array.ndim == 3 else 1, -1)
    step = max(1, 4_000_000 // max(1, flat.shape[1]))
    for start in range(0, flat.shape[0], step):
        counts += np.bincount(flat[start : start + step].ravel(), minlength=high + 1)
    return [int(v) for v in np.flatnonzero(counts[1:]) + 1]


def label_boxes(array: np.ndarray) -> dict[int, tuple[slice, ...]]:
    """``{value: bounding box}`` of every value > 0 present in an integer (or bool) label array.

    One pass (``scipy.ndimage.find_objects``); a box is a tuple of slices, one per axis, so
    ``array[box] == value`` is that structure cropped to its extent. Empty for other dtypes.
    """
    from scipy import ndimage

    if array.dtype == bool:
        array = array.view(np.uint8)
    if array.dtype.kind not in "ui" or array.size == 0:
        return {}
    return {v + 1: box for v, box in enumerate(ndimage.find_objects(array)) if box is not None}
