"""The demo's pictures and exports, drawn from the render store and the finished stages.

The view sheet of every shape, the held-out shapes' saved predictions exported
as coloured meshes and pictured beside the ground truth, the paper's Fig. 3
(colour transfer and PCA colours of the embeddings), the per-view weights of
the entropy-weighted vote, and the training curves. All cheap and redone on
every run.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mvdecor.config import Config
from mvdecor.data.datasets import SyntheticDataset
from mvdecor.data.mesh import LabelledMesh
from mvdecor.data.splits import Split
from mvdecor.demo.stages import METHOD_TITLES, _pct
from mvdecor.render import Renderer
from mvdecor.render.cameras import Cameras, shape_cameras
from mvdecor.render.store import RenderStore
from mvdecor.render.views import RenderedView
from mvdecor.viz import Picture, ReportMesh, part_labels_sheet, save_image, view_sheet

#: Views per held-out shape in the prediction pictures.
PICTURE_VIEWS = 3

#: Gap between picture panels, in pixels.
PANEL_GAP = 2

#: Views shown in a vote-weight picture: the half with the highest weights and the half with the lowest.
VOTE_VIEWS = 6


# ------------------------------------------------------------- stored views
def _stored_views(
    dataset: SyntheticDataset, store_root: Path, shape_id: str, indices: Sequence[int] | None = None
) -> tuple[LabelledMesh, list[RenderedView]]:
    """A shape's normalised mesh and its views ``indices`` (default all) rebuilt from the render store.

    The stored cameras are the ones training and segmentation use, so these
    are the very views the networks saw, without ray casting them again.
    """
    mesh = dataset.load(shape_id).normalized().replace(name=shape_id)
    with RenderStore(store_root).open(shape_id) as stored:
        stored.check_mesh(mesh)
        renderer = Renderer(mesh)
        picks = range(len(stored)) if indices is None else indices
        views = [stored.view(int(i), renderer) for i in picks]
    return mesh, views


def _picture_shapes(dataset: SyntheticDataset, store_root: Path, pictures: Path) -> list[dict]:
    """One contact sheet of views and labels per shape; one summary row per shape."""
    for stale in pictures.glob("*.png"):
        stale.unlink()
    store = RenderStore(store_root)
    rows = []
    for shape_id in store.shape_ids():
        with store.open(shape_id) as stored:
            picks = np.linspace(1, len(stored) - 2, 4).round().astype(int)
        mesh, views = _stored_views(dataset, store_root, shape_id, picks)
        sheet = view_sheet(
            views, mesh.face_labels, mesh.num_labels, buffers=("rgb", "normals", "depth", "labels")
        )
        save_image(sheet, pictures / f"{shape_id}.png")
        size_mb = store.shape_path(shape_id).stat().st_size / 1e6
        rows.append(
            {
                "shape": shape_id,
                "faces": mesh.num_faces,
                "parts": len(set(mesh.face_labels.tolist())),
                "textured": mesh.has_texture,
                "store_mb": round(size_mb, 3),
                "coverage": round(float(np.mean([v.coverage for v in views])), 3),
            }
        )
    return rows


# --------------------------------------------------------------- predictions
def _prediction_stage(
    dataset: SyntheticDataset,
    config: Config,
    out: Path,
    split: Split,
    fewshot: Mapping[str, Mapping[str, dict]],
) -> tuple[dict, list[ReportMesh]]:
    """Export every method's saved predictions of every test shape; picture them; their 3D views.

    The labels are the ones each few-shot run scored and saved
    (``predictions.npz``), not a second segmentation.

    Returns
    -------
    dict
        ``{shape_id: {"category", "picture", "meshes": {method: {"ply", "glb"}},
        "shape_miou": {method: float}}}`` with paths relative to ``out``.
    list of ReportMesh
        One per test shape: each method's predicted colouring and the ground truth.
    """
    from mvdecor.inference.export import export_segmentation
    from mvdecor.protocols.predictions import load_predictions

    seg_root = out / "segmentations"
    pic_root = out / "pictures" / "predictions"
    for folder in (seg_root, pic_root):
        if folder.exists():
            shutil.rmtree(folder)
    render = config.render
    shapes: dict[str, dict] = {}
    report_meshes: list[ReportMesh] = []
    for category, entry in split.items():
        names = tuple(dataset.label_names_of(category))
        methods = list(fewshot[category])
        saved = {m: load_predictions(out / fewshot[category][m]["predictions"]) for m in methods}
        for shape_id in entry["test"]:
            mesh = dataset.load(shape_id).normalized().replace(name=shape_id)
            record: dict[str, Any] = {"category": category, "meshes": {}, "shape_miou": {}}
            predicted: dict[str, np.ndarray] = {}
            for method in methods:
                prediction = saved[method][shape_id]
                predicted[method] = prediction.face_labels
                record["shape_miou"][method] = fewshot[category][method]["per_shape_miou"].get(shape_id)
                files = export_segmentation(
                    mesh,
                    prediction.face_labels,
                    names,
                    seg_root / method,
                    confidence=prediction.face_confidence,
                )
                record["meshes"][method] = {
                    kind: files[kind].relative_to(out).as_posix() for kind in ("ply", "glb")
                }
            files = export_segmentation(mesh, mesh.face_labels, names, seg_root / "ground_truth")
            record["meshes"]["ground_truth"] = {
                kind: files[kind].relative_to(out).as_posix() for kind in ("ply", "glb")
            }
            # The cameras the network segmented with: the training scheme, seeded per shape.
            cameras = shape_cameras(render, shape_id)
            picture = _prediction_picture(mesh, cameras, predicted, names)
            record["picture"] = save_image(picture, pic_root / f"{shape_id}.png").relative_to(out).as_posix()
            shapes[shape_id] = record
            labelings = {METHOD_TITLES[m]: predicted[m] for m in methods}
            labelings["ground truth"] = mesh.face_labels
            report_meshes.append(
                ReportMesh(shape_id, mesh.vertices, mesh.faces, names, labelings, caption=category)
            )
    return shapes, report_meshes


def _prediction_picture(
    mesh: LabelledMesh,
    cameras: Cameras,
    predictions: Mapping[str, np.ndarray],
    label_names: Sequence[str],
) -> np.ndarray:
    """A few views of ``mesh``: colour | ground truth | each method's fused face labels, and a legend."""
    renderer = Renderer(mesh)
    picks = np.linspace(1, len(cameras) - 2, PICTURE_VIEWS).round().astype(int)
    views = [renderer.render_view(cameras, int(index)) for index in picks]
    columns = {"ground truth": mesh.face_labels}
    # Long titles ("transfer (no training)") on two lines, to fit a panel.
    columns.update(
        {METHOD_TITLES.get(m, m).replace(" (", "\n("): labels for m, labels in predictions.items()}
    )
    return part_labels_sheet(views, columns, label_names, colour_buffer="rgb", gap=PANEL_GAP)


# ------------------------------------------------------------------ pictures
def _figure3_views(render: Any) -> tuple[int, int]:
    """Two views of the first camera ring about 60 degrees of azimuth apart: they overlap well.

    View 0 is the top pole, views ``1 .. segments`` the first ring (see
    :func:`mvdecor.render.cameras.sphere_directions`).
    """
    step = max(1, round(render.segments / 6))
    return 1, min(1 + step, render.num_views - 1)


def _embedding_pictures(
    dataset: SyntheticDataset, config: Config, out: Path, split: Split, seed: int, device: Any
) -> tuple[list[Picture], dict[str, dict[str, float]]]:
    """The paper's Fig. 3 per category, with the pre-trained network and with a random one.

    Two pairs per category, each drawn with both networks
    (``pictures/embeddings/<category>_<pair>_<network>.png``): two views of the
    first held-out shape (``same_shape``), and the same camera on two shapes
    (``two_shapes``: the first two held-out shapes, or the first held-out and
    the first training shape when only one is held out).

    Returns
    -------
    list of Picture
        The sheets, paths relative to ``out``, with captions.
    dict
        ``{"<category>/<pair>/<network>": {"miss_share", "mean_similarity"}}``.
    """
    from dataclasses import replace

    import torch

    from mvdecor.models.checkpoints import build_model, load_embedding
    from mvdecor.viz import embed_views, embedding_sheet

    folder = out / "pictures" / "embeddings"
    if folder.exists():
        shutil.rmtree(folder)
    checkpoint = out / "pretrain" / "checkpoints" / "last.pt"
    pretrained, stats, net_config = load_embedding(checkpoint, device)
    # The same architecture at its initialisation, seeded as the correspondence measurement's.
    torch.manual_seed(seed)
    random_network = build_model(
        replace(net_config, model=replace(net_config.model, imagenet_checkpoint=""))
    ).to(device)
    networks = {"pretrained": pretrained, "random": random_network}
    network_words = {
        "pretrained": f"the pre-trained network ({checkpoint.relative_to(out).as_posix()})",
        "random": "a randomly initialised network of the same architecture, for contrast",
    }
    modalities = net_config.model.modalities
    first, second = _figure3_views(config.render)
    pictures: list[Picture] = []
    numbers: dict[str, dict[str, float]] = {}
    for category, entry in split.items():
        shape = entry["test"][0]
        if len(entry["test"]) > 1:
            other, other_words = entry["test"][1], f"the held-out {entry['test'][1]}"
        else:
            other = entry["train"][0]
            other_words = f"the training shape {other} (seen without labels in pre-training)"
        _, (view_a, view_b) = _stored_views(dataset, out / "store", shape, [first, second])
        _, (view_other,) = _stored_views(dataset, out / "store", other, [first])
        views = [view_a, view_b, view_other]
        # (source, target) indices into ``views``, view titles, and what the pair shows.
        pairs = {
            "same_shape": (
                (0, 1),
                (f"{shape} view {first}", f"{shape} view {second}"),
                f"two views of the held-out {category} {shape} (a perfect transfer reproduces the "
                "target's own position colours)",
            ),
            "two_shapes": (
                (2, 0),
                (f"{other} view {first}", f"{shape} view {first}"),
                f"two {category}s seen from the same camera, {other_words} as the source and the "
                f"held-out {shape} as the target",
            ),
        }
        for network, model in networks.items():
            # Each view is embedded once per network, whatever the pairs it is in.
            embedded = embed_views(model, views, modalities, stats, device=device)
            for pair, ((source, target), names, words) in pairs.items():
                sheet = embedding_sheet(
                    views[source],
                    views[target],
                    embedded[source],
                    embedded[target],
                    names=names,
                    note=f"Network: {network}.",
                    device=device,
                )
                path = save_image(sheet.image, folder / f"{category}_{pair}_{network}.png")
                transfer = sheet.transfer
                numbers[f"{category}/{pair}/{network}"] = {
                    "miss_share": transfer.miss_share,
                    "mean_similarity": transfer.mean_similarity,
                }
                caption = (
                    f"Fig. 3, {category}, {network_words[network]}: colour transfer between {words}; "
                    f"red: best cosine similarity below {transfer.threshold:g} "
                    f"({100 * transfer.miss_share:.1f}% of the target). Right: the embeddings' first three "
                    "principal components as RGB."
                )
                pictures.append(Picture(path.relative_to(out).as_posix(), caption))
    return pictures, numbers


def _vote_weight_pictures(
    dataset: SyntheticDataset,
    out: Path,
    split: Split,
    fewshot: Mapping[str, Mapping[str, dict]],
    device: Any,
) -> tuple[list[Picture], dict[str, Any]]:
    """How much each view counts in the vote, for the first held-out shape, with each network (not transfer).

    The views' class probabilities are predicted once more for this one shape
    (the few-shot runs keep only the fused labels). The picture shows the
    :data:`VOTE_VIEWS` views with the highest and the lowest weights
    (``pictures/vote_weights/<shape>_<method>.png``).

    Returns
    -------
    list of Picture
        One per method, paths relative to ``out``, with captions.
    dict
        ``{"shape", "category", "weights": {method: [weight of each view]}}``.
    """
    from mvdecor.inference.fusion import view_weight
    from mvdecor.inference.segment import Segmenter
    from mvdecor.viz import vote_weight_sheet

    folder = out / "pictures" / "vote_weights"
    if folder.exists():
        shutil.rmtree(folder)
    category, entry = next(iter(split.items()))
    shape = entry["test"][0]
    mesh, views = _stored_views(dataset, out / "store", shape)
    names = tuple(dataset.label_names_of(category))
    pictures: list[Picture] = []
    weights_of: dict[str, list[float]] = {}
    for method, run in fewshot[category].items():
        if not run["checkpoint"]:  # transfer: no network, no views, no vote
            continue
        segmenter = Segmenter.from_checkpoint(out / run["checkpoint"], device)
        # A head that weighs positions needs the box its views' hit points are mapped by.
        probs = segmenter.predict(views, mesh.bounds() if segmenter.model.needs_positions else None)
        gamma = segmenter.config.segment.gamma
        weights = np.array([view_weight(p, view.mask, gamma) for p, view in zip(probs, views, strict=True)])
        by_weight = np.argsort(-weights, kind="stable")
        if len(views) > VOTE_VIEWS:
            by_weight = np.concatenate(
                [by_weight[: VOTE_VIEWS // 2], by_weight[-(VOTE_VIEWS - VOTE_VIEWS // 2) :]]
            )
        sheet = vote_weight_sheet(
            [probs[i] for i in by_weight],
            [views[i].mask for i in by_weight],
            names,
            gamma=gamma,
            exclude_classes=segmenter.exclude_classes,
            titles=[f"view {i}" for i in by_weight],
        )
        path = save_image(sheet.image, folder / f"{shape}_{method}.png")
        weights_of[method] = weights.tolist()
        shown = (
            f"all {len(views)} views"
            if len(views) <= VOTE_VIEWS
            else f"the {VOTE_VIEWS // 2} views with the highest and the {VOTE_VIEWS - VOTE_VIEWS // 2} with "
            f"the lowest weight of its {len(views)} views"
        )
        caption = (
            f"Entropy-weighted vote of {METHOD_TITLES[method]} on the held-out {category} {shape}: {shown}, "
            f"each with its predicted labels, its per-pixel normalised entropy and its vote weight W "
            f"(all {len(views)} weights from {weights.min():.3g} to {weights.max():.3g})."
        )
        pictures.append(Picture(path.relative_to(out).as_posix(), caption))
    return pictures, {"shape": shape, "category": category, "weights": weights_of}


def _curve_pictures(out: Path, fewshot: Mapping[str, Mapping[str, dict]], pretrained: bool) -> list[Picture]:
    """Training curves of the pre-training run and of every fine-tuning run (``pictures/curves/``)."""
    from mvdecor.viz import plot_training_curves

    folder = out / "pictures" / "curves"
    if folder.exists():
        shutil.rmtree(folder)
    runs: list[tuple[Path, str, str, str]] = []
    if pretrained:
        runs.append(
            (
                out / "pretrain",
                "pretrain",
                "pre-training (dense multi-view InfoNCE)",
                "Pre-training: training and validation InfoNCE loss and learning rate, against the step.",
            )
        )
    for category, methods in fewshot.items():
        for method, run in methods.items():
            if not run["checkpoint"]:  # transfer trains nothing
                continue
            run_dir = (out / run["checkpoint"]).parent.parent
            if not (run_dir / "metrics.csv").is_file():  # finetune.method nearest trains nothing either
                continue
            title = f"fine-tuning {METHOD_TITLES[method]}, {category}"
            runs.append(
                (
                    run_dir,
                    f"finetune_{category}_{method}",
                    title,
                    f"Fine-tuning {METHOD_TITLES[method]} on the labelled {category}s: cross-entropy loss, "
                    "learning rate and pixel accuracy on the training views, against the step.",
                )
            )
    pictures = []
    for run_dir, stem, title, caption in runs:
        path = plot_training_curves(run_dir, folder / f"{stem}.png", title=title)
        pictures.append(Picture(path.relative_to(out).as_posix(), caption))
    return pictures


def _prediction_and_shape_pictures(
    predictions: Mapping[str, dict], shape_rows: Sequence[Mapping[str, Any]], split: Split
) -> list[Picture]:
    """The prediction picture of every test shape and the view sheet of every shape, with captions."""
    pictures = []
    for shape_id, record in predictions.items():
        scores = ", ".join(f"{METHOD_TITLES[m]} {_pct(v)}%" for m, v in record["shape_miou"].items())
        pictures.append(
            Picture(
                record["picture"],
                f"Held-out {record['category']} {shape_id}, {PICTURE_VIEWS} views: colour, ground truth, "
                f"each method's fused face labels; shape mIoU {scores}.",
            )
        )
    test_ids = {s for entry in split.values() for s in entry["test"]}
    for row in shape_rows:
        role = "held-out" if row["shape"] in test_ids else "training"
        pictures.append(
            Picture(
                f"pictures/{row['shape']}.png",
                f"{row['shape']} ({role}): four views (rows) of colour, world normals, normalised depth and "
                "ground-truth parts.",
            )
        )
    return pictures
