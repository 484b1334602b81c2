"""RunSpecs and RunResults built by hand, so store, spec and report tests need no detector or dataset."""

from __future__ import annotations

from fractalad.bench.result import RunResult
from fractalad.bench.spec import RunSpec


def make_spec(category: str = "tile", method: str = "padim", seed: int = 0, **changes: object) -> RunSpec:
    values = {
        "dataset": "synthetic",
        "category": category,
        "data_hash": "0" * 64,
        "few_shot": None,
        "method": method,
        "params": '{"n_features":20}',
        "backbone": "resnet18",
        "weights_id": f"random:{seed}",
        "layers": (1, 2, 3),
        "normalization": None,
        "size": 64,
        "seed": seed,
        "root": "/data",
        "weights": "random",
        "weights_label": "random",
    }
    values.update(changes)
    return RunSpec(**values)


def make_result(spec: RunSpec, image_auroc: float = 0.75) -> RunResult:
    return RunResult(
        spec=spec,
        image_auroc=image_auroc,
        pixel_auroc=0.9,
        aupro=None,
        n_train=6,
        n_test=4,
        positives=2,
        fit_seconds=1.0,
        predict_seconds=0.5,
        images_per_second=8.0,
        peak_rss_mb=300.0,
        peak_gpu_mb=None,
        rss_scope="run",
        scores=(0.1, 0.2, 0.9, 0.3),
        labels=(0, 0, 1, 1),
        weights_resolved=spec.weights_id,
        normalization_used="0.485,0.456,0.406/0.229,0.224,0.225",
    )
