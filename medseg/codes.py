"""Coded concepts (SNOMED CT, via pydicom's code dictionaries) for the structures medseg segments.

Used by checkpoints (label map with concepts) and by the DICOM-SEG / SR writers. Left and right lung
are coded as *Lung* with an anatomic-region modifier *Left*/*Right* (the DICOM CID 7151/244 style
that 3D Slicer and OHIF display), instead of pre-coordinated codes not in pydicom's dictionaries.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

__all__ = ["StructureConcept", "concept_for", "concept_to_dict"]


@dataclass(frozen=True)
class StructureConcept:
    """What a segment is: category (CID 7150), type (CID 7151 / 7159) and optional laterality."""

    category: Code
    type: Code
    modifier: Code | None = None


_ANATOMY = codes.SCT.AnatomicalStructure
_ABNORMAL = codes.SCT.MorphologicallyAbnormalStructure

_CONCEPTS: dict[str, StructureConcept] = {
    "lung": StructureConcept(_ANATOMY, codes.SCT.Lung),
    "lungs": StructureConcept(_ANATOMY, codes.SCT.Lung),
    "right lung": StructureConcept(_ANATOMY, codes.SCT.Lung, codes.SCT.Right),
    "left lung": StructureConcept(_ANATOMY, codes.SCT.Lung, codes.SCT.Left),
    "nodule": StructureConcept(_ABNORMAL, codes.SCT.Nodule),
    "lung nodule": StructureConcept(_ABNORMAL, codes.SCT.Nodule),
    "trachea": StructureConcept(_ANATOMY, codes.SCT.Trachea),
    "heart": StructureConcept(_ANATOMY, codes.SCT.Heart),
}


def concept_for(name: str) -> StructureConcept:
    """The coded concept of a structure name (case-insensitive); unknown names -> generic tissue.

    Unknown names are coded as Anatomical Structure / Tissue so a SEG is still valid; the segment
    label keeps the user's name.
    """
    return _CONCEPTS.get(name.strip().lower(), StructureConcept(_ANATOMY, codes.SCT.Tissue))


def _code_dict(code: Code) -> dict[str, str]:
    return {"value": code.value, "scheme": code.scheme_designator, "meaning": code.meaning}


def concept_to_dict(name: str) -> dict[str, object]:
    """JSON-friendly form of :func:`concept_for` (for checkpoint ``config.json``)."""
    c = concept_for(name)
    out: dict[str, object] = {"category": _code_dict(c.category), "type": _code_dict(c.type)}
    if c.modifier is not None:
        out["modifier"] = _code_dict(c.modifier)
    return out
