"""Lung-nodule detection: reference targets, candidates from probability maps, LUNA16 FROC.

* :mod:`medseg.detect.targets` - LUNA16/LIDC annotation CSVs and spherical nodule masks.
* :mod:`medseg.detect.candidates` - connected-component candidates, NMS, LUNA16 submission CSV.
* :mod:`medseg.detect.froc` - the LUNA16 FROC protocol (CPM, bootstrap CI) and its plot.

World coordinates are millimetres in the DICOM patient frame (LPS) throughout.
"""

from medseg.detect.candidates import (
    Detection,
    detect_candidates,
    non_max_suppression,
    write_candidates_csv,
)
from medseg.detect.froc import (
    LUNA16_FPS_PER_SCAN,
    Candidate,
    FROCResult,
    evaluate_detection,
    plot_froc,
    read_candidates_csv,
    read_seriesuids,
)
from medseg.detect.sr import write_nodule_sr
from medseg.detect.targets import NoduleAnnotation, nodule_mask, read_nodule_annotations

__all__ = [
    "NoduleAnnotation",
    "read_nodule_annotations",
    "nodule_mask",
    "Detection",
    "detect_candidates",
    "non_max_suppression",
    "write_candidates_csv",
    "Candidate",
    "FROCResult",
    "LUNA16_FPS_PER_SCAN",
    "evaluate_detection",
    "plot_froc",
    "read_candidates_csv",
    "read_seriesuids",
    "write_nodule_sr",
]

# The model-driven pipeline needs torch (via medseg.infer): imported on first use only.
_PIPELINE = ("NoduleResult", "detect", "detect_nodules", "write_nodule_outputs")
__all__ += list(_PIPELINE)


def __getattr__(name: str) -> object:
    if name in _PIPELINE:
        from medseg.detect import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'medseg.detect' has no attribute {name!r}")
