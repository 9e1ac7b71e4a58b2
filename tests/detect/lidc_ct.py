"""The real LIDC-IDRI-0001 CT subset as an :class:`Image`, for the detection and SR tests.

The CT is assembled here with pydicom (independently of ``medseg.io``) so the geometry checks do
not depend on the reader under test elsewhere: slices sorted along the slice normal, HU from the
rescale tags, affine from ImageOrientationPatient / PixelSpacing / ImagePositionPatient (LPS).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.image import Image, ImageSource


def load_dicom_ct(folder: Path) -> Image:
    import pydicom

    files = sorted(folder.glob("*.dcm"))
    full = [pydicom.dcmread(f) for f in files]
    iop = np.asarray(full[0].ImageOrientationPatient, dtype=np.float64)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    order = np.argsort([float(np.dot(normal, np.asarray(ds.ImagePositionPatient, dtype=float))) for ds in full])
    full = [full[i] for i in order]
    files = [files[i] for i in order]
    hu = np.stack(
        [ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in full]
    )
    ipp0 = np.asarray(full[0].ImagePositionPatient, dtype=np.float64)
    ipp1 = np.asarray(full[1].ImagePositionPatient, dtype=np.float64)
    dr, dc = (float(v) for v in full[0].PixelSpacing)  # row spacing (y), column spacing (x)
    affine = np.eye(4)
    affine[:3, 0] = row_dir * dc
    affine[:3, 1] = col_dir * dr
    affine[:3, 2] = ipp1 - ipp0
    affine[:3, 3] = ipp0
    headers = []
    for ds in full:
        h = ds.copy()
        del h.PixelData
        headers.append(h)
    src = ImageSource(path=folder, format="dicom", datasets=tuple(headers), files=tuple(files))
    return Image(hu, affine, "intensity", "CT", src)
