"""Case outputs beyond the DICOM formats: PNG overlays, mask files and the table of case outputs.

* :func:`overlay_png` - contours over the image (CXR) or an axial montage + coronal view (CT).
* :func:`write_mask` - label maps as NIfTI / MetaImage / NRRD / PNG.
* :mod:`medseg.export.outputs` - the one table of what a case writes (SEG, mask, overlay, SR, ...),
  used by ``predict``, ``prelabel``, ``detect`` and ``autolabel`` alike.

DICOM-SEG reading and writing is a format and lives in :mod:`medseg.io` (``read_dicom_seg``,
``write_dicom_seg``); structure colours live in :mod:`medseg.colours`.
"""

from medseg.export.masks import write_mask
from medseg.export.overlay import overlay_png

__all__ = ["write_mask", "overlay_png"]
