"""Search spaces: TOML files loaded, checked and frozen into typed objects.

What this package guarantees: a space that loads is one the rest of the system can run (every key
checked against its bounds, sections checked together, one ``SearchSpaceError`` naming the file,
the key and what is allowed otherwise), and a space stored in a study reads back equal.

- ``load_space(path)`` / ``parse_space(text)``: a ``SearchSpace``.
- ``SearchSpace``: the sections (``sections``), ``suggest`` a point (``TrialParams``), build its
  model and recipe, make its sampler, round-trip through ``to_dict``/``from_dict``.
- ``FloatRange`` / ``IntRange`` / ``Choice``: how a searched parameter is written (``params``).
"""

from __future__ import annotations

from automl.space.params import Choice, FloatRange, IntRange, Param
from automl.space.search_space import (
    SearchSpace,
    TrialParams,
    load_space,
    parse_space,
    space_differences,
    space_from_stored,
)
from automl.space.sections import (
    ConstraintSection,
    DataSection,
    ModelSection,
    ObjectiveSection,
    PrunerSection,
    SamplerName,
    SamplerSection,
    SchedulerKind,
    SchedulerSection,
    SearchSection,
    TrainSection,
)

__all__ = [
    "Choice",
    "ConstraintSection",
    "DataSection",
    "FloatRange",
    "IntRange",
    "ModelSection",
    "ObjectiveSection",
    "Param",
    "PrunerSection",
    "SamplerName",
    "SamplerSection",
    "SchedulerKind",
    "SchedulerSection",
    "SearchSection",
    "SearchSpace",
    "TrainSection",
    "TrialParams",
    "load_space",
    "parse_space",
    "space_differences",
    "space_from_stored",
]
