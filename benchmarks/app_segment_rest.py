"""How long "segment the rest" takes in the labelling app, on a folder of meshes.

Writes ``--shapes`` built-in synthetic meshes of one category as OBJ files into a
folder, with face labels (``<name>.labels.txt``) for the first ``--labelled`` of
them and ``labels.json``, opens the app on it (its FastAPI application through
the framework's test client: the same job code as the page's button, without a
browser), starts one job and polls it until it ends. Prints the job's wall time,
when each stage message first appeared, and how many meshes got a prediction.

``--method transfer``: the learning-free answer (seconds). ``--method pipeline``:
pre-training (``--pretrain-iterations``; the preset's 2,400 by default, about an
hour on 2 cores), the app's adaptation (on the ``cpu`` preset the nearest labelled
faces alone, ``mvdecor.app.jobs.APP_CPU_OVERRIDES``), then segmenting the unlabelled
meshes. ``--jobs 2`` times a second job on the same folder after the first (the
pipeline's second reuses the pre-trained network, as a user's next round does).
``--pair``: the fine-tuned network averaged with its nearest labelled faces (the ``cpu``
preset's pair) instead of the lookup alone, which the app keeps on the ``cpu`` preset. Run::

    .venv/bin/python benchmarks/app_segment_rest.py --method transfer
    .venv/bin/python benchmarks/app_segment_rest.py --method pipeline [--pretrain-iterations 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_folder(root: Path, category: str, shapes: int, labelled: int, seed: int) -> list[str]:
    """The meshes as OBJ, labels for the first ``labelled``; the unlabelled ids."""
    import trimesh

    from mvdecor.data import open_dataset

    dataset = open_dataset(f"synthetic:categories={category},n={shapes},seed={seed},textured=0")
    ids = list(dataset.shape_ids())
    for number, shape_id in enumerate(ids):
        mesh = dataset.load(shape_id)
        trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(root / f"{shape_id}.obj")
        if number < labelled:
            np.savetxt(root / f"{shape_id}.labels.txt", np.asarray(mesh.face_labels), fmt="%d")
    (root / "labels.json").write_text(json.dumps({"labels": list(dataset.label_names_of(category))}))
    return ids[labelled:]


def run_job(client, method: str, options: dict, timeout: float) -> dict | None:
    """Start one job, poll it to its end; the job's record with ``wall_s`` and ``stages`` added
    (each stage message's first appearance, seconds from the request), or None if refused."""
    start = time.monotonic()
    reply = client.post("/api/jobs", json={"method": method, "options": options})
    if reply.status_code != 200:
        print(f"job refused: {reply.text}", file=sys.stderr)
        return None
    stages: dict[str, float] = {}
    while True:
        job = client.get("/api/jobs/current").json()["job"]
        # Training messages count steps ("pre-training step 7/100"): one stage, its first step.
        stage = re.sub(r" step \d+/\d+$", "", str(job["message"]))
        stages.setdefault(stage, time.monotonic() - start)
        if job["state"] != "running" or time.monotonic() - start > timeout:
            break
        time.sleep(0.2)
    return {**job, "wall_s": time.monotonic() - start, "stages": stages}


def report(job: dict, number: int, method: str, options: dict, targets: int) -> None:
    wall = job["wall_s"]
    print(f"job {number}: {method}, state {job['state']}, {wall:.1f} s from the request to the end")
    if job.get("error"):
        print(f"error: {job['error']}")
    print(f"predicted {len(job['predicted'])} of {targets} unlabelled meshes")
    for message, seconds in job["stages"].items():
        print(f"  {seconds:8.1f} s  {message}")
    print(json.dumps({"job": number, "method": method, "wall_s": round(wall, 2), "state": job["state"],
                      "stages": job["stages"], "predicted": len(job["predicted"]), "options": options}))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", choices=("transfer", "pipeline"), default="transfer")
    parser.add_argument("--shapes", type=int, default=10, help="meshes in the folder (default 10)")
    parser.add_argument("--labelled", type=int, default=2, help="of them labelled (default 2)")
    parser.add_argument("--category", default="chair", help="synthetic category (default chair)")
    parser.add_argument("--preset", default="cpu", choices=("cpu", "paper"))
    parser.add_argument("--pretrain-iterations", type=int, help="override the preset's pre-training length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="seconds before giving up")
    parser.add_argument(
        "--pair",
        action="store_true",
        help="fine-tune the network and mix in its nearest labelled faces (finetune.method network, "
        "segment.prior_method nearest at 0.5: the cpu preset's pair) instead of the app's lookup alone",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="jobs in a row on the same folder (default 1; a later pipeline job reuses the pre-trained network)",
    )
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    from mvdecor.app.server import create_app

    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    print(f"machine: {platform.node()}, {platform.platform()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    options: dict = {}
    if args.method == "pipeline":
        options["preset"] = args.preset
        overrides: dict = {}
        if args.pretrain_iterations is not None:
            overrides["pretrain"] = {"iterations": args.pretrain_iterations}
        if args.pair:
            overrides["finetune"] = {"method": "network"}
            overrides["segment"] = {"prior_method": "nearest", "transfer_prior": 0.5}
        if overrides:
            options["overrides"] = overrides
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "shapes"
        folder.mkdir()
        targets = write_folder(folder, args.category, args.shapes, args.labelled, args.seed)
        print(f"folder: {args.shapes} synthetic {args.category} meshes, {args.labelled} labelled")
        with TestClient(create_app(folder), base_url="http://127.0.0.1") as client:
            for number in range(1, args.jobs + 1):
                job = run_job(client, args.method, options, args.timeout)
                if job is None:
                    return 1
                report(job, number, args.method, options, len(targets))
                if job["state"] != "done":
                    return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
