"""The ``mvdecor`` command line.

Each sub-command is a thin layer over the Python API. Errors that a user can
cause (:class:`~mvdecor.errors.MvDecorError`) are printed as one line,
``mvdecor: error: <file>: <reason>``, with exit code 1; a bad command line
exits with 2; Ctrl-C with 130. Warnings are one line too,
``mvdecor: warning: <message>``.

Modules: :mod:`~mvdecor.cli.common` (shared options, checks, warnings),
:mod:`~mvdecor.cli.overrides` (``--set`` and its shortcut options),
:mod:`~mvdecor.cli.data_commands`, :mod:`~mvdecor.cli.train_commands`,
:mod:`~mvdecor.cli.segment_commands`, :mod:`~mvdecor.cli.pictures`,
:mod:`~mvdecor.cli.report_commands` and :mod:`~mvdecor.cli.app_commands`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mvdecor import __version__
from mvdecor.cli.app_commands import add_app_parser
from mvdecor.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    add_imagenet_checkpoint_option,
    add_keep_checkpoints_option,
    check_counts,
    one_line_warnings,
)
from mvdecor.cli.data_commands import (
    add_datasets_parser,
    add_info_parser,
    add_render_parser,
    add_views_parser,
)
from mvdecor.cli.overrides import SHORTCUTS, config_from_args
from mvdecor.cli.pictures import add_pictures_command
from mvdecor.cli.report_commands import add_demo_parser, add_report_parser
from mvdecor.cli.segment_commands import add_segment_parser, add_transfer_parser
from mvdecor.cli.train_commands import (
    add_deform_parser,
    add_evaluate_embedding_parser,
    add_fewshot_parser,
    add_finetune_parser,
    add_pretrain_parser,
)
from mvdecor.errors import MvDecorError

#: The name the tests and older code import.
_config_from_args = config_from_args

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "SHORTCUTS",
    "add_imagenet_checkpoint_option",
    "add_keep_checkpoints_option",
    "add_pictures_command",
    "build_parser",
    "config_from_args",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mvdecor",
        description=(
            "Few-shot fine-grained 3D mesh segmentation by multi-view dense correspondence "
            "learning (MvDeCor, ECCV 2022). Render meshes from many views, learn per-pixel "
            "embeddings that agree across views, fine-tune on a few labelled shapes, and vote "
            "the per-view predictions back onto the mesh."
        ),
        epilog="Run `mvdecor COMMAND --help` for a command's options. Datasets: `mvdecor datasets`.",
    )
    parser.add_argument("--version", action="version", version=f"mvdecor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (
        add_render_parser,
        add_info_parser,
        add_views_parser,
        add_pretrain_parser,
        add_finetune_parser,
        add_segment_parser,
        add_transfer_parser,
        add_deform_parser,
        add_fewshot_parser,
        add_evaluate_embedding_parser,
        add_pictures_command,
        add_datasets_parser,
        add_demo_parser,
        add_report_parser,
        add_app_parser,
    ):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mvdecor`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    with one_line_warnings():
        try:
            check_counts(args)
            return int(args.func(args) or 0)
        except MvDecorError as exc:
            print(f"mvdecor: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            print("mvdecor: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
