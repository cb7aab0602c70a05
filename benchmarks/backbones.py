"""Parameters and one forward + backward step of the embedding network, per backbone and head.

Input ``batch x 5 x res x res`` (grey + normal + depth, the ``cpu`` preset's modalities),
output stride 16, fp32, training mode; median of ``--steps`` timed steps after 2 warm-up
steps. Prints one line per (head, backbone)::

    python benchmarks/backbones.py --backbones resnet18,efficientnet_lite0 --heads light,paper
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from mvdecor.models.embedding import EmbeddingNet, count_parameters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", default="resnet18,efficientnet_lite0")
    parser.add_argument("--heads", default="light,paper")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s)"
    )
    x = torch.randn(args.batch, 5, args.resolution, args.resolution)
    for head in args.heads.split(","):
        for name in args.backbones.split(","):
            torch.manual_seed(0)
            net = EmbeddingNet(name, in_channels=5, embed_dim=64, output_stride=16, head=head).train()
            times = []
            for i in range(args.steps + 2):
                net.zero_grad(set_to_none=True)
                start = time.perf_counter()
                embedding = net(x)
                (embedding * embedding.detach().roll(1, dims=0)).sum().backward()
                if i >= 2:
                    times.append(time.perf_counter() - start)
            print(
                f"{head:5s} {name:18s} backbone {count_parameters(net.backbone) / 1e6:5.2f}M "
                f"network {count_parameters(net) / 1e6:5.2f}M  fwd+bwd {statistics.median(times):.2f} s "
                f"(min {min(times):.2f}, max {max(times):.2f})",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
