"""What a label value *is*: the one place that decides structure names, codes, sides and pairs.

A :class:`Structure` is a canonical name (``"right lung"``), its coded concept (SNOMED CT
category/type, laterality modifier, as DICOM-SEG and SR need them), its laterality
(``"right"``/``"left"``/``None``) and its organ (``"lung"``). A :class:`LabelMap` maps label
values to structures and answers every question other modules used to answer by parsing names:
which values are lungs, which value is the mirror image of which (flip TTA, flip augmentation),
which is right and which left (post-processing, QC), and how each is coded (SEG, SR).

Names are matched tolerantly, once, when a config, checkpoint or label map is loaded::

    >>> parse_structure("Lung_R").name, parse_structure("Left  Lung").name, parse_structure("LUNG L").name
    ('right lung', 'left lung', 'left lung')

Case, separators (space, ``_``, ``-``, ``.``, ``/``), word order, ``R``/``L``/``Rt``/``Lt``,
``right``/``left`` (also *dx*/*sin*, *rechts*/*links*, *droit*/*gauche*) and camel case
(``LungLeft``) are accepted, which covers the RTSTRUCT conventions of TCIA (``Lung-Left``),
planning systems (``LUNG_L``, ``Lt Lung``) and AAPM (``Lung_L``). Unknown names keep the user's
words (lower-cased) and are coded as *Anatomical Structure / Tissue* so a SEG stays valid; a
config may instead give explicit codes (see :meth:`LabelMap.from_config`).

Left and right lung are coded as SNOMED *Lung* with the anatomic modifier *Left*/*Right* (the
DICOM CID 7151/244 style that 3D Slicer and OHIF display) rather than pre-coordinated codes that
pydicom's dictionaries do not hold.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from medseg.errors import ConfigError

__all__ = [
    "Structure",
    "StructureConcept",
    "LabelMap",
    "Laterality",
    "parse_structure",
    "concept_for",
    "concept_to_dict",
    "DEFAULT_LUNG_LABELS",
]

Laterality = Literal["right", "left"]

#: The label map of the shipped lung models: 1 right lung, 2 left lung (0 background).
DEFAULT_LUNG_LABELS: dict[int, str] = {1: "right lung", 2: "left lung"}


@dataclass(frozen=True)
class StructureConcept:
    """What a segment is coded as: category (CID 7150), type (CID 7151 / 7159), optional modifier."""

    category: Code
    type: Code
    modifier: Code | None = None


@dataclass(frozen=True)
class Structure:
    """One structure: canonical name, organ, laterality and coded concept.

    Attributes:
        name: canonical name, lower case, e.g. ``"right lung"``, ``"lungs"``, ``"nodule"``.
        organ: the structure without its side, e.g. ``"lung"`` (``"lungs"`` -> ``"lung"``).
        laterality: ``"right"``, ``"left"`` or ``None`` (unpaired or both sides).
        concept: the coded concept written into DICOM-SEG / SR.
        label: the name as the user wrote it (kept for display, e.g. a SEG's segment label).
    """

    name: str
    organ: str
    laterality: Laterality | None
    concept: StructureConcept
    label: str = ""

    @property
    def is_lung(self) -> bool:
        """True for any lung structure (right, left, both)."""
        return self.organ == "lung"

    @property
    def mirror_name(self) -> str | None:
        """The canonical name of the other side (``"left lung"`` for ``"right lung"``), else None."""
        if self.laterality is None:
            return None
        other = "left" if self.laterality == "right" else "right"
        return f"{other} {self.organ}"


# -- name parsing ------------------------------------------------------------------------------

_SIDES: dict[str, Laterality] = {}
for _w in ("right", "r", "rt", "dx", "dexter", "dextra", "rechts", "rechte", "rechter", "droit", "droite", "d"):
    _SIDES[_w] = "right"
for _w in ("left", "l", "lt", "sin", "sinister", "sinistra", "links", "linke", "linker", "gauche", "g", "s"):
    _SIDES[_w] = "left"
# single letters d/g/s (French D/G, Latin S) count as sides only next to a known organ and no other word

#: organ word -> (canonical organ, coded type, category)
_ORGANS: dict[str, tuple[str, Code, Code]] = {
    "lung": ("lung", codes.SCT.Lung, codes.SCT.AnatomicalStructure),
    "lungs": ("lung", codes.SCT.Lung, codes.SCT.AnatomicalStructure),
    "pulmo": ("lung", codes.SCT.Lung, codes.SCT.AnatomicalStructure),
    "poumon": ("lung", codes.SCT.Lung, codes.SCT.AnatomicalStructure),
    "lunge": ("lung", codes.SCT.Lung, codes.SCT.AnatomicalStructure),
    "nodule": ("nodule", codes.SCT.Nodule, codes.SCT.MorphologicallyAbnormalStructure),
    "nodules": ("nodule", codes.SCT.Nodule, codes.SCT.MorphologicallyAbnormalStructure),
    "trachea": ("trachea", codes.SCT.Trachea, codes.SCT.AnatomicalStructure),
    "heart": ("heart", codes.SCT.Heart, codes.SCT.AnatomicalStructure),
}
# words that only qualify an organ ("whole lungs" are lungs)
_QUALIFIERS = {"whole", "total", "both"}

_SIDE_CODE: dict[Laterality, Code] = {"right": codes.SCT.Right, "left": codes.SCT.Left}
_TISSUE = StructureConcept(codes.SCT.AnatomicalStructure, codes.SCT.Tissue)


def _words(name: str) -> list[str]:
    # camel case ("LungLeft", "RightLung") and glued sides ("LungL", "RLung") become separate words
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name.strip())
    words = [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]
    out: list[str] = []
    for w in words:
        m = re.fullmatch(r"(lungs?)(l|r|lt|rt)|(l|r|lt|rt)(lungs?)", w)
        if m:
            organ = m.group(1) or m.group(4)
            side = m.group(2) or m.group(3)
            out += [organ, side] if m.group(1) else [side, organ]
        else:
            out.append(w)
    return out


def parse_structure(name: str) -> Structure:
    """The :class:`Structure` a free-text label name means (see the module docstring for the rules).

    ``"Lung_R"``, ``"right lung"``, ``"Right Lung"``, ``"Lung R"``, ``"RT LUNG"``, ``"Lung-Right"``
    -> ``right lung``; ``"Lungs"`` / ``"lung"`` -> ``lungs`` / ``lung`` (no side); ``"lung nodule"``
    -> ``nodule``. Anything else keeps its words: ``"Spinal_Cord"`` -> ``spinal cord`` (Tissue).
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"a structure name must be non-empty text, got {name!r}", path="labels")
    words = _words(name)
    organ_words = [w for w in words if w in _ORGANS]
    organs = {_ORGANS[w][0] for w in organ_words}
    # "lung nodule": nodule wins over the lung it lies in
    if organs == {"lung", "nodule"}:
        organs = {"nodule"}
        organ_words = [w for w in organ_words if _ORGANS[w][0] == "nodule"]
    rest = [w for w in words if w not in _ORGANS and w not in _QUALIFIERS]
    sides = {_SIDES[w] for w in rest if w in _SIDES}
    other = [w for w in rest if w not in _SIDES]
    if len(organs) == 1 and not other and len(sides) <= 1:
        organ, type_code, category = _ORGANS[organ_words[0]]
        if sides:
            side: Laterality = sides.pop()
            return Structure(
                name=f"{side} {organ}",
                organ=organ,
                laterality=side,
                concept=StructureConcept(category, type_code, _SIDE_CODE[side]),
                label=name,
            )
        canonical = organ_words[0] if organ_words[0] in ("lung", "lungs") else organ
        return Structure(canonical, organ, None, StructureConcept(category, type_code), label=name)
    if len(organs) == 1 and not other and len(sides) > 1:
        raise ConfigError(f"structure name {name!r} names both sides", path="labels",
                          hint="name each side separately, e.g. 'right lung' and 'left lung'")
    # unknown: keep the words
    canonical = " ".join(words)
    return Structure(canonical, canonical, None, _TISSUE, label=name)


def _code_from_dict(d: Any, key: str) -> Code:
    if not isinstance(d, Mapping) or not all(k in d for k in ("value", "scheme", "meaning")):
        raise ConfigError(f"{key} must be a mapping with value, scheme and meaning", path=key,
                          hint="e.g. {value: '39607008', scheme: SCT, meaning: Lung}")
    return Code(str(d["value"]), str(d["scheme"]), str(d["meaning"]))


def _code_dict(code: Code) -> dict[str, str]:
    return {"value": code.value, "scheme": code.scheme_designator, "meaning": code.meaning}


def concept_for(name: str) -> StructureConcept:
    """The coded concept of a structure name (tolerant, see :func:`parse_structure`)."""
    return parse_structure(name).concept


def concept_to_dict(structure: str | Structure) -> dict[str, object]:
    """JSON-friendly form of a structure's concept (for checkpoint ``config.json``)."""
    c = (parse_structure(structure) if isinstance(structure, str) else structure).concept
    out: dict[str, object] = {"category": _code_dict(c.category), "type": _code_dict(c.type)}
    if c.modifier is not None:
        out["modifier"] = _code_dict(c.modifier)
    return out


def _concept_from_dict(d: Any, key: str) -> StructureConcept:
    if not isinstance(d, Mapping):
        raise ConfigError(f"{key} must be a mapping with category and type codes", path=key)
    modifier = _code_from_dict(d["modifier"], f"{key}.modifier") if d.get("modifier") else None
    return StructureConcept(_code_from_dict(d.get("category"), f"{key}.category"),
                            _code_from_dict(d.get("type"), f"{key}.type"), modifier)


class LabelMap(Mapping[int, Structure]):
    """Label value -> :class:`Structure`, with the questions every module asks about structures.

    Built once from names (:meth:`from_names`), a config (:meth:`from_config`, which honours
    explicit codes) or a checkpoint's label section. Values are integers >= 1 (0 is background).
    Two values may not mean the same structure.
    """

    def __init__(self, structures: Mapping[int, Structure]):
        items: dict[int, Structure] = {}
        by_name: dict[str, int] = {}
        for v, s in sorted(structures.items()):
            v = int(v)
            if v < 1 or v > 65535:
                raise ConfigError(f"label value {v} out of range", path=f"labels.{v}",
                                  hint="label values are 1..65535 (0 is background)")
            if s.name in by_name:
                raise ConfigError(
                    f"labels {by_name[s.name]} and {v} both mean '{s.name}' "
                    f"({structures[by_name[s.name]].label!r}, {s.label!r})",
                    path=f"labels.{v}", hint="give each label value a different structure")
            by_name[s.name] = v
            items[v] = s
        self._items = items
        self._by_name = by_name

    # -- construction
    @classmethod
    def from_names(cls, names: Mapping[int, str] | None) -> LabelMap:
        """From ``{value: free-text name}`` (``None`` -> the default lung labels)."""
        names = DEFAULT_LUNG_LABELS if names is None else names
        return cls({int(v): parse_structure(str(n)) for v, n in names.items()})

    @classmethod
    def from_config(cls, labels: Mapping[int, str], codes_: Mapping[int, Any] | None = None) -> LabelMap:
        """From a config's ``labels`` plus optional explicit ``structures`` codes per value.

        ``codes_[v]`` is ``{category: {value, scheme, meaning}, type: {...}, modifier: {...}?,
        laterality: right|left?}``; it overrides the concept parsed from the name.
        """
        out: dict[int, Structure] = {}
        for v, n in labels.items():
            s = parse_structure(str(n))
            given = (codes_ or {}).get(int(v))
            if given:
                concept = _concept_from_dict(given, f"structures.{v}")
                lat = given.get("laterality", s.laterality)
                if lat not in (None, "right", "left"):
                    raise ConfigError(f"laterality must be right or left, got {lat!r}",
                                      path=f"structures.{v}.laterality")
                s = Structure(s.name, s.organ, lat, concept, label=s.label)
            out[int(v)] = s
        extra = set(codes_ or {}) - set(int(k) for k in labels)
        if extra:
            raise ConfigError(f"structures given for unnamed label value(s) {sorted(extra)}",
                              path="structures", hint="name those values under labels first")
        return cls(out)

    @classmethod
    def coerce(cls, labels: LabelMap | Mapping[int, str] | None) -> LabelMap:
        """Accept a LabelMap, a ``{value: name}`` mapping or None (default lung labels)."""
        return labels if isinstance(labels, LabelMap) else cls.from_names(labels)

    # -- Mapping protocol
    def __getitem__(self, value: int) -> Structure:
        return self._items[int(value)]

    def __iter__(self) -> Iterator[int]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"LabelMap({ {v: s.name for v, s in self._items.items()} })"

    # -- questions
    def names(self) -> dict[int, str]:
        """``{value: canonical name}``."""
        return {v: s.name for v, s in self._items.items()}

    def display_names(self) -> dict[int, str]:
        """``{value: name as given}`` (falls back to the canonical name)."""
        return {v: (s.label or s.name) for v, s in self._items.items()}

    def value_of(self, name: str) -> int | None:
        """The label value of a structure given by any spelling, or None."""
        return self._by_name.get(parse_structure(name).name)

    def lung_values(self) -> list[int]:
        """Values of every lung structure (right, left or both)."""
        return [v for v, s in self._items.items() if s.is_lung]

    def side_values(self, organ: str = "lung") -> tuple[int | None, int | None]:
        """``(right value, left value)`` of ``organ`` (None where absent)."""
        right = self._by_name.get(f"right {organ}")
        left = self._by_name.get(f"left {organ}")
        return right, left

    def mirror_pairs(self) -> list[tuple[int, int]]:
        """``[(right value, left value), ...]`` for every organ present on both sides."""
        pairs = []
        for v, s in self._items.items():
            if s.laterality == "right" and s.mirror_name in self._by_name:
                pairs.append((v, self._by_name[s.mirror_name]))
        return pairs

    def mirror_permutation(self, num_classes: int | None = None) -> list[int]:
        """Channel order after a left-right flip: ``perm[c]`` is the class that channel c becomes.

        Identity except that right/left pairs swap; length ``num_classes`` (default max value + 1),
        index 0 is background.
        """
        n = num_classes if num_classes is not None else (max(self._items, default=0) + 1)
        perm = list(range(n))
        for r, le in self.mirror_pairs():
            if r < n and le < n:
                perm[r], perm[le] = le, r
        return perm

    def to_json(self) -> dict[str, dict[str, object]]:
        """``{"1": {"name", "label", "laterality", "concept"}}`` for checkpoint ``config.json``."""
        return {
            str(v): {"name": s.label or s.name, "structure": s.name, "laterality": s.laterality,
                     "concept": concept_to_dict(s)}
            for v, s in self._items.items()
        }
