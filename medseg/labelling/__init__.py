"""Labelling automation: annotator agreement, mask QC, uncertainty ranking, active learning.

Layer 5: uses :mod:`medseg.metrics`, :mod:`medseg.io` and :mod:`medseg.export` (DICOM-SEG input).
"""

from medseg.labelling.annotations import AnnotationImport, PrelabelCase, export_prelabels, import_annotations
from medseg.labelling.autolabel import AutolabelParams, autolabel, autolabel_ct_lungs
from medseg.labelling.checks import DEFAULT_LUNG_LABELS, QCFlag, QCLimits, lung_role, qc, qc_files
from medseg.labelling.compare import AgreementReport, AgreementRow, agreement, consensus
from medseg.labelling.uncertainty import case_uncertainty, rank_worklist, select_for_annotation
from medseg.labelling.workflow import PrelabelResult, Selection, case_features, prelabel, select_cases

__all__ = [
    "export_prelabels",
    "import_annotations",
    "PrelabelCase",
    "AnnotationImport",
    "AgreementReport",
    "AgreementRow",
    "agreement",
    "consensus",
    "QCFlag",
    "QCLimits",
    "DEFAULT_LUNG_LABELS",
    "lung_role",
    "qc",
    "qc_files",
    "autolabel",
    "autolabel_ct_lungs",
    "AutolabelParams",
    "case_uncertainty",
    "rank_worklist",
    "select_for_annotation",
    "prelabel",
    "PrelabelResult",
    "select_cases",
    "Selection",
    "case_features",
]
