"""All file access: DICOM images, DICOM-SEG, RTSTRUCT, NIfTI, MetaImage/NRRD and pictures.

Public API::

    read_image(path, *, series_uid=None, kind="intensity", modality=None) -> Image
    write_image(image, path, *, compress=None) -> Path
    convert_image(src, dst, *, series_uid=None, kind="intensity") -> Image
    list_series(folder) -> list[SeriesInfo]
    image_info(path, *, series_uid=None) -> ImageInfo
    ras_lps_flip(affine) -> affine      # the one RAS <-> LPS conversion (NIfTI)
    read_dicom_seg / write_dicom_seg    # DICOM Segmentation (BINARY or LABELMAP)
    read_label_map(path) -> (Image, names)  # any annotation file: SEG, NIfTI, PNG, ...
    read_rtstruct(path, reference)      # RT Structure Set contours rasterised on a grid

Every image is in DICOM patient space (LPS, mm) with SimpleITK array order; see
:mod:`medseg.image`.
"""

from medseg.io.core import ImageInfo, convert_image, detect_format, image_info, read_image, write_image
from medseg.io.dicom import SeriesInfo, list_series
from medseg.io.formats import FORMATS, FileFormat, register_format, stem_of, suffix_of
from medseg.io.labelmap import check_label_map_path, is_dicom_seg, read_label_map, write_label_map
from medseg.io.nifti import ras_lps_flip
from medseg.io.rtstruct import list_rois, read_rtstruct
from medseg.io.seg import DicomSeg, read_dicom_seg, write_dicom_seg

__all__ = [
    "FORMATS",
    "FileFormat",
    "register_format",
    "stem_of",
    "suffix_of",
    "read_dicom_seg",
    "write_dicom_seg",
    "DicomSeg",
    "read_label_map",
    "write_label_map",
    "check_label_map_path",
    "is_dicom_seg",
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
