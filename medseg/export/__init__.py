"""Results out of medseg: DICOM-SEG (highdicom), NIfTI/MHA label maps and PNG overlays.

* :func:`write_dicom_seg` / :func:`read_dicom_seg` - DICOM Segmentation objects referring to the
  source DICOM series or radiograph (BINARY or LABELMAP).
* :func:`write_nodule_sr` - nodule findings as a TID 1500 DICOM SR (see :mod:`medseg.export.sr`).
* :func:`write_mask` - label maps as NIfTI / MetaImage / NRRD.
* :func:`overlay_png` - contours over the image (CXR) or an axial montage + coronal view (CT).
* :func:`label_colour` - the deterministic colour of a label value, shared by all of them.
"""

from medseg.export.colours import label_colour, label_colours
from medseg.export.masks import write_mask
from medseg.export.overlay import overlay_png
from medseg.export.seg import DicomSeg, read_dicom_seg, write_dicom_seg
from medseg.export.sr import write_nodule_sr

__all__ = [
    "write_dicom_seg",
    "read_dicom_seg",
    "DicomSeg",
    "write_mask",
    "write_nodule_sr",
    "overlay_png",
    "label_colour",
    "label_colours",
]
