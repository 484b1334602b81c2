"""RunResult: the one result row type every consumer reads (detect, the grid runner, the demo, the report)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from fractalad.bench.artifacts import Artifact
from fractalad.bench.spec import RunSpec

METRICS: tuple[str, ...] = ("image_auroc", "pixel_auroc", "aupro")


@dataclass(frozen=True)
class RunResult:
    """Metrics (None where undefined, never imputed), counts, timings, memory, raw scores and provenance."""

    spec: RunSpec
    image_auroc: float | None
    pixel_auroc: float | None
    aupro: float | None
    n_train: int
    n_test: int
    positives: int
    fit_seconds: float
    predict_seconds: float
    images_per_second: float  # test images scored per second of predict time
    peak_rss_mb: float | None
    peak_gpu_mb: float | None
    rss_scope: str  # "run" (reset per run) or "process" (where the OS cannot reset the high-water mark)
    scores: tuple[float, ...]  # (n_test,) image scores in test order
    labels: tuple[int, ...]  # (n_test,) 0 good, 1 anomalous
    weights_resolved: str  # the backbone factory's name for the weights actually loaded
    normalization_used: str  # "mean,mean,mean/std,std,std" applied before the backbone
    fit_info: dict[str, Any] = field(default_factory=dict)
    artifacts: tuple[Artifact, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    def metrics(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in METRICS}

    def to_json(self) -> str:
        """Everything but the spec (the store keeps that in its own column)."""
        values = asdict(self)
        del values["spec"]
        for name in METRICS:
            if values[name] is not None and not math.isfinite(values[name]):
                raise ValueError(f"metric {name} is {values[name]}; metrics are finite or None")
        return json.dumps(values, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, spec: RunSpec, text: str) -> RunResult:
        values = json.loads(text)
        values["scores"] = tuple(values["scores"])
        values["labels"] = tuple(values["labels"])
        values["artifacts"] = tuple(Artifact(**a) for a in values["artifacts"])
        return cls(spec=spec, **values)
