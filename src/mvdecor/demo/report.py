"""The demo's verdict and its reports: ``report.html`` and the Markdown ``report.md``.

Both are written from the run's summary (the numbers of ``summary.json``):
which method is ahead on each mean score, how the best learned method compares
with the learning-free transfer, the score tables, the pictures with their
captions and where the time went.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mvdecor.config import Config
from mvdecor.demo.pictures import PICTURE_VIEWS
from mvdecor.demo.stages import METHOD_TITLES, SCORES, TRANSFER, _count, _n, _pct
from mvdecor.viz import MetricsTable, Picture, ReportMesh


def _nearest(settings: Mapping[str, Any]) -> bool:
    """Whether the networks labelled pixels by their nearest labelled pixels (``finetune.method: nearest``).

    Summaries written before the method was recorded fine-tuned.
    """
    return settings.get("finetune_method", "network") == "nearest"


def _nearest_units(settings: Mapping[str, Any]) -> str:
    """What the nearest head labels: faces (``finetune.nearest_pooling: faces``) or pixels."""
    return "faces" if settings.get("nearest_pooling", "none") == "faces" else "pixels"


def _paired(settings: Mapping[str, Any]) -> bool:
    """Whether each fine-tuned network was averaged with the nearest labelled faces of the network
    it started from (``segment.prior_method: nearest``, the ``cpu`` preset's pair).

    Summaries written before the prior was recorded used none.
    """
    return (
        not _nearest(settings)
        and settings.get("prior_method") == "nearest"
        and settings.get("transfer_prior", 0.0) > 0
    )


def _pair_words(settings: Mapping[str, Any]) -> str:
    """The sentence that says how a fine-tuned network's labels were averaged with its lookup."""
    weight = settings["transfer_prior"]
    share = "averaged" if weight == 0.5 else f"mixed (weight {weight:g} for the lookup)"
    return (
        f" Each network's fused face distributions were then {share} with those of the nearest labelled "
        "faces of the network it started from, on the same labelled shapes and with no training (a bank "
        "of the labelled views' faces, each face of a test shape pooled over its views; "
        "`segment.prior_method: nearest`): the `cpu` preset's pair, scored as one method."
    )


def _adaptation_steps(settings: Mapping[str, Any]) -> str:
    """What each network did with the labelled shapes, as a noun phrase of the budget sentence."""
    if _nearest(settings):
        return f"no fine-tuning (nearest labelled {_nearest_units(settings)})"
    steps = _n(settings["finetune_iterations"], "fine-tuning step")
    return steps + (" (then averaged with the nearest labelled faces)" if _paired(settings) else "")


def lookup_of(checkpoint: str) -> str:
    """The nearest labelled faces paired with the fine-tuned network ``checkpoint`` (a path inside
    the demo folder), where the few-shot protocol banks them beside the run's folder."""
    from mvdecor.protocols.methods import nearest_prior_folder

    run_folder = Path(checkpoint).parent.parent
    return (nearest_prior_folder(run_folder) / "checkpoints" / "last.pt").as_posix()


# ---------------------------------------------------------------- html report
def _html_report(summary: dict, out: Path, pictures: Sequence[Picture], meshes: Sequence[ReportMesh]) -> Path:
    """``report.html``: the score tables, every picture with its caption, a 3D view of each test shape."""
    from mvdecor.viz import write_report

    methods = summary["methods"]

    def percent(value: float | None) -> float | str:
        return "n/a" if value is None else 100 * value  # None: transfer's 2D score (no per-view prediction)

    records = {
        category: {
            f"{name} {METHOD_TITLES[m]}": percent(runs[m][key])
            for key, name in SCORES.items()
            for m in methods
        }
        for category, runs in summary["fewshot"].items()
    }
    records["mean"] = {
        f"{name} {METHOD_TITLES[m]}": percent(summary["mean"][m][key])
        for key, name in SCORES.items()
        for m in methods
    }
    tables = [
        MetricsTable.from_records(
            records,
            index="category",
            title="Scores in % (ShapeNet-Part rules, area-weighted)",
            float_format="{:.1f}",
        ),
        MetricsTable.from_records(
            {
                shape_id: {
                    "category": record["category"],
                    **{
                        f"shape mIoU {METHOD_TITLES[m]}": percent(record["shape_miou"].get(m))
                        for m in methods
                    },
                }
                for shape_id, record in summary["predictions"].items()
            },
            index="held-out shape",
            title="Shape mIoU of each held-out shape in %",
            float_format="{:.1f}",
        ),
    ]
    embedding = summary["pretraining"]
    if embedding is not None:
        tables.append(
            MetricsTable.from_records(
                {
                    name: {"within 2 px": percent(acc["acc@2px"]), "within 5 px": percent(acc["acc@5px"])}
                    for name, acc in embedding["correspondence"].items()
                },
                index="embedding",
                title="Cross-view correspondence accuracy on the held-out shapes in %",
                float_format="{:.1f}",
            )
        )
    settings = summary["settings"]
    description = (
        f"Built-in synthetic {' and '.join(summary['categories'])} shapes, "
        f"{settings['shapes_per_category']} per category, split into training and held-out shapes. "
    )
    if _nearest(settings):
        adapted = (
            f"per category the nearest labelled {_nearest_units(settings)} of k = {settings['k']} labelled "
            "shapes in the embedding "
            "(no fine-tuning)"
        )
    else:
        adapted = (
            f"per category {settings['finetune_iterations']} fine-tuning steps on k = {settings['k']} "
            "labelled shapes"
            + (" (each network then averaged with its nearest labelled faces)" if _paired(settings) else "")
        )
    if summary["verdict"] is not None:
        description += (
            f"{settings['pretrain_iterations']} pre-training steps without labels, then {adapted} "
            "of the pre-trained network (MvDeCor), "
            + (
                "of the ImageNet weights it started from (ImageNet), "
                if "imagenet" in summary["methods"]
                else ""
            )
            + "and of random weights (scratch). "
            + _verdict_text(summary).replace("**", "")
        )
    else:
        description += f"Pre-training skipped: {adapted} of random weights."
    description += f" Beside the networks, {_TRANSFER_WORDS} {_vs_transfer_text(summary)}".replace("**", "")
    description += " Tiny CPU budgets: a smoke test of the pipeline, not the paper's results."
    return write_report(
        out,
        "mvdecor demo",
        tables,
        pictures,
        meshes,
        preset=summary["preset"],
        description=description,
    )


# -------------------------------------------------------------------- report
def _verdict(mean: Mapping[str, Mapping[str, float]], fewshot: Mapping[str, Mapping[str, dict]]) -> dict:
    """Which method is ahead on each mean score, by how much, and overall.

    ``winner`` is the method ahead on all three scores, ``"tie"`` when no score
    differs by 0.05 points or more, else ``"mixed"``.
    """
    per_score = {}
    for key in SCORES:
        gain = mean["mvdecor"][key] - mean["scratch"][key]
        ahead = "tie" if not abs(gain) >= 5e-4 else ("mvdecor" if gain > 0 else "scratch")
        per_score[key] = {"ahead": ahead, "mvdecor_minus_scratch_points": 100 * gain}
    leaders = {v["ahead"] for v in per_score.values()}
    if leaders == {"tie"}:
        winner = "tie"
    elif len(leaders) == 1:
        winner = leaders.pop()
    else:
        winner = "mixed"
    categories_ahead = sum(
        (runs["mvdecor"]["part_miou"] or 0.0) > (runs["scratch"]["part_miou"] or 0.0)
        for runs in fewshot.values()
    )
    verdict = {
        "winner": winner,
        "scores": per_score,
        "categories_mvdecor_ahead_on_part_miou": int(categories_ahead),
        "categories": len(fewshot),
    }
    if "imagenet" in mean:  # pre-training started from ImageNet weights: what it added to them
        verdict["mvdecor_minus_imagenet_part_miou_points"] = 100 * (
            mean["mvdecor"]["part_miou"] - mean["imagenet"]["part_miou"]
        )
    return verdict


def _vs_transfer(mean: Mapping[str, Mapping[str, float]]) -> dict:
    """The best learned method's mean part mIoU against the learning-free transfer's, in points."""
    learned = [m for m in mean if m != TRANSFER]
    best = max(learned, key=lambda m: mean[m]["part_miou"])
    points = {m: 100 * (mean[m]["part_miou"] - mean[TRANSFER]["part_miou"]) for m in learned}
    ahead = "tie" if not abs(points[best]) >= 0.05 else (best if points[best] > 0 else TRANSFER)
    return {
        "best_learned": best,
        "best_learned_part_miou": mean[best]["part_miou"],
        "transfer_part_miou": mean[TRANSFER]["part_miou"],
        "best_learned_minus_transfer_points": points[best],
        "ahead": ahead,
        "minus_transfer_points": points,
    }


#: What the transfer baseline is, in one sentence.
_TRANSFER_WORDS = (
    "the learning-free label transfer (**transfer**) gives each test face the label of the nearest labelled "
    "surface point of the same k shapes after a per-axis bounding-box alignment, with no network and so no "
    "per-view prediction (its 2D pixel mIoU is n/a)."
)


def _vs_transfer_text(summary: dict) -> str:
    """One sentence: the best learned method's part mIoU against the learning-free transfer's."""
    vs = summary["vs_transfer"]
    gain = vs["best_learned_minus_transfer_points"]
    learned = [m for m in summary["methods"] if m != TRANSFER]
    title = METHOD_TITLES[vs["best_learned"]]
    who = (
        f"The better learned method, {title},"
        if len(learned) > 1
        else f"{title[:1].upper()}{title[1:]}, the only network,"
    )
    where = (
        "level with" if vs["ahead"] == "tie" else f"{abs(gain):.1f} points {'above' if gain > 0 else 'below'}"
    )
    floor = "; no learned method clears the learning-free floor here" if vs["ahead"] == TRANSFER else ""
    return (
        f"{who} has a mean part mIoU {where} the learning-free transfer's "
        f"({_pct(vs['best_learned_part_miou'])}% against {_pct(vs['transfer_part_miou'])}%){floor}."
    )


def _verdict_text(summary: dict) -> str:
    """The verdict in one to three plain sentences."""
    text = _scratch_verdict_text(summary)
    verdict, mean = summary["verdict"], summary["mean"]
    if "mvdecor_minus_imagenet_part_miou_points" in verdict:
        gain = verdict["mvdecor_minus_imagenet_part_miou_points"]
        text += (
            f" Against the ImageNet weights its pre-training started from, MvDeCor's part mIoU is "
            f"{_pct(mean['mvdecor']['part_miou'])}% against {_pct(mean['imagenet']['part_miou'])}% "
            f"({gain:+.1f} points: what the pre-training added)."
        )
    return text


def _scratch_verdict_text(summary: dict) -> str:
    """MvDeCor against scratch, in one or two plain sentences."""
    verdict, mean = summary["verdict"], summary["mean"]

    def compare(key: str) -> str:
        gain = verdict["scores"][key]["mvdecor_minus_scratch_points"]
        return (
            f"{SCORES[key]} {_pct(mean['mvdecor'][key])}% against {_pct(mean['scratch'][key])}% "
            f"({gain:+.1f} points)"
        )

    categories = (
        f"MvDeCor has the higher part mIoU in {verdict['categories_mvdecor_ahead_on_part_miou']} of "
        f"{verdict['categories']} categories."
    )
    every = "; ".join(compare(key) for key in SCORES)
    if verdict["winner"] == "mvdecor":
        return f"**MvDeCor won** on all three mean scores (MvDeCor against scratch): {every}. {categories}"
    if verdict["winner"] == "scratch":
        return (
            f"**Training from scratch won** on all three mean scores (MvDeCor against scratch): {every}. "
            f"{categories}"
        )
    if verdict["winner"] == "tie":
        return f"**Neither method won**: the mean scores agree within 0.05 points ({every})."
    ahead = [SCORES[k] for k, v in verdict["scores"].items() if v["ahead"] == "mvdecor"]
    behind = [SCORES[k] for k, v in verdict["scores"].items() if v["ahead"] == "scratch"]
    return (
        f"**No clear winner**: MvDeCor is ahead on {' and '.join(ahead) or 'no score'} and behind on "
        f"{' and '.join(behind) or 'no score'} (MvDeCor against scratch: {every}). {categories}"
    )


def _networks(methods: Sequence[str]) -> str:
    return "three networks" if "imagenet" in methods else "two networks"


def _imagenet_start(methods: Sequence[str]) -> str:
    return ", its pre-training started from the encoder's ImageNet weights" if "imagenet" in methods else ""


def _imagenet_column(methods: Sequence[str]) -> str:
    if "imagenet" not in methods:
        return ""
    return ", and a third the ImageNet weights without that pre-training (**ImageNet**: what the pre-training adds to them)"


def _report(summary: dict, config: Config, html_name: str) -> str:
    """``report.md`` from the summary; ``html_name`` is the HTML report's path relative to it."""
    settings = summary["settings"]
    methods = summary["methods"]
    embedding = summary["pretraining"]
    split = summary["split"]
    lines = [
        "# mvdecor demo",
        "",
        f"Built-in synthetic shapes of {len(split)} categories ({', '.join(split)}), "
        f"{settings['shapes_per_category']} per category, split into training and held-out test shapes "
        f"(`split.json`); dataset `{summary['dataset']}`. Preset `{summary['preset']}` "
        f"({summary['views_per_shape']} views per shape at {summary['resolution']}x{summary['resolution']}, "
        f"{config.model.backbone}), with the demo's short schedules in {settings['precision']}; the "
        "configuration in use is in "
        "`config.yaml`, every number below in `summary.json`.",
        "",
        f"**[{html_name}]({html_name})** shows the same results in a browser, with every picture and an "
        "interactive 3D view of each held-out shape coloured by each method's prediction and by the "
        "ground truth (it works offline, opened straight from this folder).",
        "",
    ]
    lines += _results_section(summary)
    lines += _predictions_section(summary, split, methods)
    lines += _pictures_section(summary)
    if embedding is not None:
        lines += _pretraining_section(embedding, summary["settings"])
    lines += _timing_section(summary)
    lines += [
        "## Shapes",
        "",
        f"Rendered {summary['rendered']} shapes in {summary['render_seconds']:.1f} s into `store/` "
        f"({summary['shapes'] - summary['rendered']} already stored). Each picture shows four views (rows) "
        "of one shape: colour, world normals, normalised depth, and the ground-truth part labels.",
        "",
        "| shape | role | faces | labelled parts | textured | store MB | coverage |",
        "| --- | --- | ---: | ---: | :---: | ---: | ---: |",
    ]
    test_ids = {s for entry in split.values() for s in entry["test"]}
    labelled_ids = {
        s for runs in summary["fewshot"].values() for run in runs.values() for s in run["labelled_shapes"]
    }
    for r in summary["shapes_detail"]:
        role = "test" if r["shape"] in test_ids else "train"
        if r["shape"] in labelled_ids:
            role = "train, labelled"
        lines.append(
            f"| [{r['shape']}](pictures/{r['shape']}.png) | {role} | {r['faces']} | {r['parts']} | "
            f"{'yes' if r['textured'] else 'no'} | {r['store_mb']} | {r['coverage']} |"
        )
    return "\n".join(lines) + "\n"


def _results_section(summary: dict) -> list[str]:
    settings = summary["settings"]
    methods = summary["methods"]
    fewshot = summary["fewshot"]
    k = settings["k"]
    if "mvdecor" in methods and _nearest(settings):
        intro = (
            f"Per category, the same k = {_n(k, 'labelled training shape')} (all {summary['views_per_shape']} "
            f"views of each; same draw, same seed) labelled the held-out test shapes through {_networks(methods)}, "
            "with no training (`finetune.method: nearest`): "
            + (
                "each face of a test shape, its pixels' embeddings averaged over all the views, takes the "
                "labels of its nearest labelled faces in the network's embedding (a bank drawn from the "
                "labelled views' pixels, each carrying its face's averaged embedding"
                if _nearest_units(settings) == "faces"
                else "each pixel of a test view takes the labels of its nearest labelled pixels in the "
                "network's embedding (a bank drawn from the labelled views"
            )
            + "; neighbours ranked by embedding similarity and, with a position weight, by how close the "
            "surface points they see lie in their shapes' bounding boxes). One network is the "
            "embedding network pre-trained without labels on the training shapes of all categories "
            f"(**MvDeCor**{_imagenet_start(methods)}), another the same architecture with random weights "
            f"(**scratch**: what {'the ImageNet weights and ' if 'imagenet' in methods else ''}pre-training "
            f"add{'' if 'imagenet' in methods else 's'}){_imagenet_column(methods)}. Per-view predictions were "
            "fused onto the faces by entropy-weighted voting and scored there."
        )
    elif "mvdecor" in methods:
        intro = (
            f"Per category, {_networks(methods)} were fine-tuned on the same k = {_n(k, 'labelled training shape')} "
            f"(all {summary['views_per_shape']} views of each; same draw, same seed) for "
            f"{_n(settings['finetune_iterations'], 'step')} of {settings['finetune_views_per_batch']} views: "
            "one starting from the embedding network pre-trained without labels on the training shapes of "
            f"all categories (**MvDeCor**{_imagenet_start(methods)}), one from random weights "
            f"(**scratch**){_imagenet_column(methods)}. Each segmented the held-out test shapes (per-view "
            "predictions fused onto the faces by entropy-weighted voting) and was scored there."
            + (_pair_words(settings) if _paired(settings) else "")
        )
    elif _nearest(settings):
        intro = (
            "Pre-training was skipped (`pretrain_iterations=0`), so the only network has random weights "
            f"(**scratch**): per category the nearest labelled {_nearest_units(settings)} of "
            f"k = {_n(k, 'labelled training shape')} "
            "in its embedding labelled the held-out test shapes, with no training (`finetune.method: "
            "nearest`), and were scored there."
        )
    else:
        intro = (
            "Pre-training was skipped (`pretrain_iterations=0`), so the only learned method is training from "
            "scratch: per "
            f"category one network was fine-tuned from random weights on k = {_n(k, 'labelled training shape')} "
            f"for {_n(settings['finetune_iterations'], 'step')} and scored on the held-out test shapes."
            + (_pair_words(settings).replace("Each network's", "Its") if _paired(settings) else "")
        )
    intro += " Beside the networks, " + _TRANSFER_WORDS
    header = "| category | test shapes |"
    rule = "| --- | ---: |"
    for metric in SCORES.values():
        for method in methods:
            header += f" {metric} {METHOD_TITLES[method]} |"
            rule += " ---: |"
    versus = ""
    if "mvdecor" in methods:
        versus = "MvDeCor against its ImageNet weights, " if "imagenet" in methods else "MvDeCor against "
    heading = versus + (
        "a network not pre-trained (scratch)" if _nearest(settings) else "training from scratch"
    )
    heading = heading[:1].upper() + heading[1:]
    lines = [
        f"## {heading} and transfer",
        "",
        intro,
        "",
        "Scores in %, ShapeNet-Part rules, faces weighted by area: *part mIoU* is the mean over parts of "
        "each part's IoU accumulated over the test shapes, *shape mIoU* the mean over shapes of each "
        "shape's mean part IoU (fused 3D labels), *2D pixel mIoU* the same as part mIoU over the pixels "
        "of the individual views before fusion.",
        "",
        header,
        rule,
    ]
    for category, runs in fewshot.items():
        row = f"| {category} | {len(runs[methods[0]]['test_shapes'])} |"
        for key in SCORES:
            for method in methods:
                row += f" {_pct(runs[method][key])} |"
        lines.append(row)
    row = "| **mean** | |"
    for key in SCORES:
        for method in methods:
            row += f" **{_pct(summary['mean'][method][key])}** |"
    lines.append(row)
    lines.append("")
    budget = (
        "These are tiny CPU budgets, sized for a 2-core CPU: "
        f"{_n(settings['pretrain_iterations'], 'pre-training step')} of "
        f"{settings['pretrain_pairs_per_batch']} view pairs and "
        f"{_adaptation_steps(settings)}, one run per category, "
        f"{_n(_count(summary['split'], 'test'), 'test shape')} in all. "
        "A difference of a few points can be noise of the labelled draw and of training; this is a smoke "
        "test of the pipeline, not a reproduction of the paper, whose schedules (`paper` preset) need a GPU."
    )
    if summary["verdict"] is not None:
        lines += [_verdict_text(summary), ""]
    lines += [_vs_transfer_text(summary), "", budget, ""]
    lines.append("Labelled shapes drawn (the same for every method):")
    lines.append("")
    for category, runs in fewshot.items():
        lines.append(f"- {category}: {', '.join(runs[methods[0]]['labelled_shapes'])}")
    paired = _paired(settings)
    if _nearest(settings):
        kind, usage = "Networks with their banks of labelled pixels", "--model CKPT"
    elif paired:
        kind, usage = "Fine-tuned networks and their lookups", "--model CKPT --prior-model LOOKUP"
    else:
        kind, usage = "Fine-tuned networks", "--model CKPT"
    lines += ["", f"{kind} (use them with `mvdecor segment MESH {usage} --out DIR`):", ""]
    for category, runs in fewshot.items():
        for method in methods:
            checkpoint = runs[method]["checkpoint"]
            if checkpoint:  # not transfer, which has no network
                lookup = f"; lookup `{lookup_of(checkpoint)}`" if paired else ""
                lines.append(f"- {category}, {METHOD_TITLES[method]}: `{checkpoint}`{lookup}")
    lines.append("")
    return lines


def _predictions_section(summary: dict, split: Mapping[str, Any], methods: Sequence[str]) -> list[str]:
    columns = " | ".join(f"shape mIoU {METHOD_TITLES[m]}" for m in methods)
    rule = " ---: |" * len(methods)
    lines = [
        "## Predictions on the held-out shapes",
        "",
        f"Each picture shows {PICTURE_VIEWS} views (rows) of a test shape: colour, ground-truth parts, "
        "then each method's fused face labels seen from the same camera, with a legend of the part names. "
        "Coloured meshes (one colour per part; the GLB has one named node per part) are in "
        "`segmentations/<method>/`, the ground truth in `segmentations/ground_truth/`. The labels are "
        "the ones scored above, saved by each few-shot run (`predictions.npz` in its run folder).",
        "",
        f"| shape | picture | {columns} | meshes |",
        f"| --- | --- |{rule} --- |",
    ]
    for shape_id, record in summary["predictions"].items():
        scores = " | ".join(_pct(record.get("shape_miou", {}).get(m)) for m in methods)
        meshes = ", ".join(
            f"[{METHOD_TITLES.get(m, 'ground truth')} PLY]({record['meshes'][m]['ply']}) / "
            f"[GLB]({record['meshes'][m]['glb']})"
            for m in [*methods, "ground_truth"]
        )
        lines.append(f"| {shape_id} | [picture]({record['picture']}) | {scores} | {meshes} |")
    lines.append("")
    return lines


def _pictures_section(summary: dict) -> list[str]:
    """Links to the embedding, vote-weight and training-curve pictures, each with its caption."""
    groups = (
        ("pictures/embeddings/", "Embeddings (the paper's Fig. 3)"),
        ("pictures/vote_weights/", "Weights of the views in the vote"),
        ("pictures/curves/", "Training curves"),
    )
    lines = ["## Pictures", ""]
    for prefix, title in groups:
        members = [p for p in summary["pictures"] if p["path"].startswith(prefix)]
        if not members:
            continue
        lines += [f"### {title}", ""]
        lines += [f"- [{Path(p['path']).name}]({p['path']}): {p['caption']}" for p in members]
        lines.append("")
    return lines


def _pretraining_section(embedding: dict, settings: Mapping[str, Any]) -> list[str]:
    if _nearest(settings):
        used = "MvDeCor embeds the labelled and the test views with the last checkpoint."
    else:
        used = "Fine-tuning starts from the last checkpoint."
    lines = [
        "## Pre-training",
        "",
        f"{_n(embedding['iterations'], 'iteration')} of dense multi-view InfoNCE on the unlabelled renders of "
        f"the {embedding['train_shapes']} training shapes of all categories together "
        f"({embedding['seconds']:.0f} s; run folder `pretrain/`). Validation InfoNCE on the "
        f"{embedding['val_shapes']} held-out shapes {embedding['first_val_loss']:.3f} -> "
        f"{embedding['best_val_loss']:.3f} (chance {embedding['chance_loss']:.2f}). {used}",
        "",
        "Cross-view correspondence on the held-out shapes: share of matched pixels whose nearest "
        "embedding in the other view lies within 2 / 5 pixels of the true match.",
        "",
        "| embedding | within 2 px | within 5 px |",
        "| --- | ---: | ---: |",
    ]
    for name, acc in embedding["correspondence"].items():
        lines.append(f"| {name} | {_pct(acc['acc@2px'])}% | {_pct(acc['acc@5px'])}% |")
    gain = (
        embedding["correspondence"]["pretrained"]["acc@5px"]
        - embedding["correspondence"]["random_network"]["acc@5px"]
    )
    verdict = (
        f"The pre-trained network finds {100 * gain:+.1f} points more matches within 5 px than a random one."
        if gain > 0
        else f"After only {embedding['iterations']} iterations the pre-trained network does not yet beat a "
        f"random one ({100 * gain:+.1f} points within 5 px), although its validation loss fell."
    )
    lines += [
        "",
        verdict + " Pre-training needs far longer: BENCHMARKS.md shows a 1,500-step `cpu` run on FAUST "
        "humans reaching 80% within 5 px on an unseen person, against 15% for a random network.",
        "",
    ]
    return lines


def _timing_section(summary: dict) -> list[str]:
    timings = summary["timings"]
    reused = set(summary["reused_stages"])
    lines = [
        "## Where the time went",
        "",
        f"Wall-clock seconds of this run: {timings['total_s']:.0f} s in all. A stage reused from an earlier "
        "run shows the seconds it took then.",
        "",
        "| stage | seconds | |",
        "| --- | ---: | --- |",
        f"| render into the store | {timings['render_s']:.1f} | |",
        f"| pictures of the views | {timings['view_pictures_s']:.1f} | |",
    ]
    if "pretrain_s" in timings:
        note = "reused" if "pretrain" in reused else ""
        lines.append(f"| pre-training | {timings['pretrain_s']:.1f} | {note} |")
        lines.append(f"| correspondence accuracy | {timings['correspondence_s']:.1f} | {note} |")
    for name, seconds in timings["finetune_and_evaluate_s"].items():
        category, method = name.split("/")
        note = "reused" if f"fine-tune {name}" in reused else ""
        verb = (
            f"label by nearest labelled {_nearest_units(summary['settings'])}"
            if _nearest(summary["settings"])
            else "fine-tune"
        )
        title = f"{verb}, segment and evaluate {METHOD_TITLES[method]}, {category}"
        if method == TRANSFER:
            title = f"transfer labels (no training) and evaluate, {category}"
        lines.append(f"| {title} | {seconds:.1f} | {note} |")
    lines.append(f"| export and picture the saved predictions | {timings['export_predictions_s']:.1f} | |")
    if "embedding_pictures_s" in timings:
        lines.append(f"| Fig. 3 pictures of the embeddings | {timings['embedding_pictures_s']:.1f} | |")
    lines += [
        f"| vote-weight pictures | {timings['vote_weight_pictures_s']:.1f} | |",
        f"| training-curve pictures | {timings['curve_pictures_s']:.1f} | |",
        f"| report.html | {timings['html_report_s']:.1f} | |",
        f"| **total** | **{timings['total_s']:.1f}** | |",
        "",
    ]
    kept = {
        "last": "only the last checkpoint of each finished run (what the report, fine-tuning and "
        "`mvdecor segment` use; it can continue training)",
        "weights": "only the network weights of each finished run's last checkpoint (they load everywhere, "
        "but the runs can no longer be continued)",
        "all": "every checkpoint of every run, with its optimizer state",
    }[summary["keep_checkpoints"]]
    lines += [
        f"The report folder takes {summary['output_mb']:.0f} MB, mostly network checkpoints "
        f"(`pretrain/checkpoints/`, `fewshot/<category>/<method>/*/checkpoints/`); it keeps {kept} "
        f"(`keep_checkpoints={summary['keep_checkpoints']}`, `--keep-checkpoints` of `mvdecor demo`).",
        "",
    ]
    return lines
