"""Case outputs beyond the file formats: PNG overlays and the one table of case outputs.

* :func:`overlay_png` - contours over the image (CXR) or an axial montage + coronal view (CT).
* :mod:`medseg.export.outputs` - what a case writes (SEG, mask, overlay, SR, candidates, ...), where
  (folder or flat layout) and when a case is complete; used by ``predict``, ``prelabel`` and
  ``detect`` alike.

File formats (DICOM-SEG, NIfTI, PNG label maps, ...) are read and written by :mod:`medseg.io`;
structure colours live in :mod:`medseg.colours`.
"""

from medseg.export.outputs import OUTPUTS, OutputSpec, register_output
from medseg.export.overlay import overlay_png

__all__ = ["overlay_png", "OUTPUTS", "OutputSpec", "register_output"]
