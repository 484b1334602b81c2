"""Parity with Anomalib 2.7.0's FastFlow and C-Flow torch models: same weights, images, epochs and settings.

Remaining deviations, measured by `test_cflow_per_batch_normalisation_effect` and recorded in
benchmarks/RESULTS.md: Anomalib's C-Flow normalises maps per evaluation batch (ours: constants fitted on the
training images) and keeps the remainder fibres of each batch (ours: drops them, as the official code does).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_anomalib_parity import SIZE, defects, texture

from fractalad.backbones import IMAGENET_NORMALIZATION, create_classifier, save_weights
from fractalad.detectors import create_detector, reference
from fractalad.detectors.base import TrainSet
from fractalad.metrics import image_auroc
from fractalad.parity import flows

pytestmark = [
    pytest.mark.parity,
    pytest.mark.skipif(
        not reference.anomalib_available(),
        reason="anomalib is not installed (pip install 'fractalad[parity]')",
    ),
]
BATCH = 8
SEEDS = (0, 1)
FASTFLOW = {"input_size": SIZE, "flow_steps": 4, "conv3x3_only": True, "hidden_ratio": 1.0, "epochs": 2}
CFLOW = {
    "condition_dim": 128,
    "coupling_blocks": 4,
    "clamp": 1.9,
    "permute_soft": False,
    "fiber_batch_size": 64,
}
PRECISIONS = ("fp32", "bf16")  # Anomalib trains in float32; bf16 is ours by default where it is native
CFLOW_EPOCHS = 2  # ours: 1 meta-epoch of 2 sub-epochs without warm-up (a constant LR, like Anomalib's)


def faint_defects(images: torch.Tensor, seed: int) -> torch.Tensor:
    """Blend small noise squares (6-11 px) at 25-50 % strength into the images: hard enough that neither side
    reaches the AUROC ceiling (FastFlow lands near 0.86 after 2 epochs), so agreement means something."""
    generator = torch.Generator().manual_seed(seed)
    out = images.clone()
    for i in range(images.shape[0]):
        side = int(torch.randint(6, 12, (1,), generator=generator))
        top, left = (int(v) for v in torch.randint(4, SIZE - side - 4, (2,), generator=generator))
        strength = float(torch.rand(1, generator=generator)) * 0.25 + 0.25
        patch = out[i, :, top : top + side, left : left + side]
        noise = torch.rand(3, side, side, generator=generator)
        out[i, :, top : top + side, left : left + side] = (1 - strength) * patch + strength * noise
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    """A random-seeded resnet18 weight file; 32 train images, 32 good + 32 defective (blended blobs) test images."""
    state = create_classifier("resnet18", 1000, seed=0).state_dict()
    path: Path = tmp_path_factory.mktemp("flows-parity") / "resnet18-random.safetensors"
    meta = {"arch": "resnet18", "mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225", "source": "test"}
    save_weights(path, state, meta)
    bad, _ = defects(texture(32, seed=3), seed=4)
    test = torch.cat([texture(32, seed=2), bad])
    labels = np.array([0] * 32 + [1] * 32)
    return state, path, TrainSet.from_tensor(texture(32, seed=1)), list(test.split(BATCH)), labels


def our_scores(
    name: str, path: Path, train: TrainSet, test, seed: int, precision: str, **params
) -> torch.Tensor:
    detector = create_detector(
        name, backbone="resnet18", weights=str(path), seed=seed, batch_size=BATCH, **params
    )
    detector.fit(train, device="cpu", precision=precision)
    return torch.cat([detector.predict(batch).image_scores for batch in test])


def test_anomalib_fastflow_extractor_took_our_weights(setup):
    state, path, _, test, _ = setup
    model = flows.build_fastflow("resnet18", state, SIZE, 1, True, 1.0, seed=0)
    ours = create_detector(
        "fastflow", backbone="resnet18", weights=str(path), input_size=SIZE
    ).make_extractor()
    theirs = model.feature_extractor.eval()(flows.normalise(test[0], IMAGENET_NORMALIZATION))
    for a, b in zip(ours(test[0]), theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_fastflow_auroc_within_two_points(setup, precision):
    """Both sides start from our initial norms and flows (the initial draw alone moves single-seed AUROC by up
    to 15 points on this category), see the same batches and train for the same epochs; Anomalib in float32."""
    state, path, train, _, labels = setup
    # C-Flow's blobs put FastFlow at the AUROC ceiling (1.000 on both sides); these fainter ones do not.
    test = list(torch.cat([texture(32, seed=2), faint_defects(texture(32, seed=3), seed=4)]).split(BATCH))
    mine, theirs = [], []
    for seed in SEEDS:
        ours = create_detector(
            "fastflow", backbone="resnet18", weights=str(path), seed=seed, batch_size=BATCH, **FASTFLOW
        )
        ours._setup("cpu")
        model = flows.build_fastflow("resnet18", state, SIZE, FASTFLOW["flow_steps"], True, 1.0, seed=seed)
        flows.start_from_ours(model, ours.norms_, ours.flows_)
        ours.fit(train, device="cpu", precision=precision)
        mine.append(image_auroc(torch.cat([ours.predict(b).image_scores for b in test]).numpy(), labels))
        flows.train(
            "fastflow",
            model,
            train,
            IMAGENET_NORMALIZATION,
            epochs=FASTFLOW["epochs"],
            batch_size=BATCH,
            lr=1e-3,
            weight_decay=1e-5,
            seed=seed,
        )
        theirs.append(image_auroc(flows.predict(model, test, IMAGENET_NORMALIZATION)[0].numpy(), labels))
    print(f"FastFlow image AUROC per seed: ours at {precision} {mine}, Anomalib {theirs}")
    # Meaningful only well away from chance and from the ceiling.
    assert 0.7 < np.mean(mine) < 0.97 and 0.7 < np.mean(theirs) < 0.97, (mine, theirs)
    assert abs(np.mean(mine) - np.mean(theirs)) <= 0.02, (mine, theirs)


@pytest.fixture(scope="module")
def anomalib_cflow(setup):
    """Per seed: Anomalib's C-Flow scores predicting batches of 8, and on the whole test set at once."""
    state, _, train, test, _ = setup
    runs = []
    for seed in SEEDS:
        model = flows.build_cflow("resnet18", (2, 3, 4), state, seed=seed, **CFLOW)
        flows.train(
            "cflow",
            model,
            train,
            IMAGENET_NORMALIZATION,
            epochs=CFLOW_EPOCHS,
            batch_size=BATCH,
            lr=2e-4,
            weight_decay=0.0,
            seed=seed,
        )
        batched = flows.predict(model, test, IMAGENET_NORMALIZATION)[0]
        whole = flows.predict(model, [torch.cat(test)], IMAGENET_NORMALIZATION)[0]
        runs.append((batched, whole))
    return runs


@pytest.fixture(scope="module", params=PRECISIONS)
def cflow_runs(setup, anomalib_cflow, request):
    """Per seed: (our AUROC at the fixture's precision, Anomalib's predicting batches of 8, on the whole set)."""
    _, path, train, test, labels = setup
    runs = []
    for seed, (batched, whole) in zip(SEEDS, anomalib_cflow, strict=True):
        ours = our_scores(
            "cflow", path, train, test, seed, request.param,
            epochs=1, sub_epochs=CFLOW_EPOCHS, lr_warmup_epochs=0, **CFLOW,
        )  # fmt: skip
        runs.append([image_auroc(s.numpy(), labels) for s in (ours, batched, whole)])
    return np.array(runs)


def test_cflow_auroc_within_two_points(cflow_runs):
    mine, _, whole = cflow_runs.mean(0)
    assert mine > 0.8, cflow_runs
    # Against Anomalib scoring the whole test set at once: its per-batch constant is then one constant, as ours.
    assert abs(mine - whole) <= 0.02, cflow_runs


def test_cflow_per_batch_normalisation_effect(cflow_runs, record_property):
    """Anomalib's per-batch map normalisation moves its AUROC: the shift is recorded, and it must exist (the
    deviation documented in the module docstring), i.e. batched scores rank the images differently."""
    _, batched, whole = cflow_runs.mean(0)
    record_property("anomalib_cflow_auroc_batched", float(batched))
    record_property("anomalib_cflow_auroc_whole_set", float(whole))
    print(
        f"C-Flow image AUROC per seed (ours, Anomalib batches of {BATCH}, Anomalib whole set): {cflow_runs.tolist()}"
    )
    assert not np.allclose(cflow_runs[:, 1], cflow_runs[:, 2]), cflow_runs
