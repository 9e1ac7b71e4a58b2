"""All file access for images: DICOM, NIfTI, MetaImage/NRRD and pictures.

Public API::

    read_image(path, *, series_uid=None, kind="intensity", modality=None) -> Image
    write_image(image, path, *, compress=None) -> Path
    convert_image(src, dst, *, series_uid=None, kind="intensity") -> Image
    list_series(folder) -> list[SeriesInfo]
    image_info(path, *, series_uid=None) -> ImageInfo
    ras_lps_flip(affine) -> affine      # the one RAS <-> LPS conversion (NIfTI)

Every image is in DICOM patient space (LPS, mm) with SimpleITK array order; see
:mod:`medseg.image`.
"""

from medseg.io.core import ImageInfo, convert_image, detect_format, image_info, read_image, write_image
from medseg.io.dicom import SeriesInfo, list_series
from medseg.io.nifti import ras_lps_flip
from medseg.io.rtstruct import list_rois, read_rtstruct

__all__ = [
    "read_rtstruct",
    "list_rois",
    "read_image",
    "write_image",
    "convert_image",
    "list_series",
    "image_info",
    "detect_format",
    "SeriesInfo",
    "ImageInfo",
    "ras_lps_flip",
]
