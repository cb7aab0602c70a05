"""The inference sections: fusing views onto the mesh (``segment``) and label transfer (``transfer``).

Split from :mod:`mvdecor.config.sections` (the training stages' sections) because the segment
section's options grew with the few-shot benchmarks; the checks are the same helpers.
"""

from __future__ import annotations

from dataclasses import dataclass

from mvdecor.config.checks import at_least, check, fraction, one_of, positive
from mvdecor.config.sections import MAX_RESOLUTION

#: How a segmenter's label prior carries the labelled shapes' labels (``segment.prior_method``).
PRIOR_METHODS = ("transfer", "deform", "nearest")
#: How a prior's weight is spread over the faces (``segment.prior_weighting``).
PRIOR_WEIGHTINGS = ("fixed", "certainty")
#: Whether label transfer joins a ``nearest`` prior's pair as a third voter (``segment.transfer_vote``).
TRANSFER_VOTES = ("off", "equal", "auto", "near", "unseen")
#: Whether a nearest head refines the box alignment of a test shape's positions (``segment.position_alignment``).
POSITION_ALIGNMENTS = ("off", "axes")


@dataclass(frozen=True)
class SegmentConfig:
    """Fusing per-view predictions onto the mesh (paper section 3.2).

    Attributes
    ----------
    method : str
        ``entropy`` (views weighted by (1 - mean normalised entropy)^gamma, the
        paper's), ``average`` (unweighted probabilities) or ``majority``.
    gamma : float
        The exponent of the entropy weight (20).
    batch_views : int
        Views per network forward pass (16).
    rings, segments : int
        Test-time cameras: ``2 + rings * segments`` views on the training
        scheme's sphere (same distances, jitter and resolution). 0 (default)
        keeps the training scheme's value; more views see more of the surface
        and vote more often (the network is the same at any view count).
    resolution : int
        Test-time image size in pixels (a multiple of 4); 0 (default) keeps the
        training's. The network is fully convolutional, so it runs at any size,
        but it sees the shape at another scale than it was trained on.
    flip : bool
        Also predict each view mirrored left to right (world-space normals and
        positions mirrored with it) and average the two probability maps, the
        mirrored one flipped back. False (default, the paper): one pass per view.
    transfer_prior : float
        Weight ``w`` of a label prior (``prior_method``; by default a label transfer,
        :mod:`mvdecor.inference.transfer`) mixed into the fused face distributions,
        ``(1 - w) * votes + w * prior``, when the labelled reference shapes are known
        (the few-shot protocol, or ``segment --references`` / ``--prior-model``).
        0 (default, the paper) disables it.
    prior_method : str
        How the prior carries the labelled shapes' labels to the faces:
        ``transfer`` (default: nearest neighbour after a bounding-box alignment,
        the ``transfer`` section) or ``deform`` (along a learned deformation of
        the best-fitting labelled shape, :mod:`mvdecor.points.deformation`; needs
        a deformation network trained on the category's shapes, the ``deform``
        section) or ``nearest`` (the face distributions of a second segmenter on
        the same labelled shapes, the nearest labelled faces of the pre-trained
        network, ``finetune.method: nearest`` with the ``nearest_*`` settings:
        an ensemble of a fine-tuned network and the lookup its pre-training
        allows; :class:`~mvdecor.inference.segment.SegmenterPrior`).
    prior_weighting : str
        ``fixed`` (default): every face mixes the prior at ``transfer_prior``;
        ``certainty``: each face's weights ``1 - w`` and ``w`` are scaled by how
        decided the votes and the prior are on it (``1 - H / log C``), so where
        one source is sure and the other is not, the sure one counts more; the
        fusion of views applies the same principle (a view's weight falls with
        its entropy) to the two sources (:func:`~mvdecor.inference.refine.refine_fusion`).
    transfer_vote : str
        Whether label transfer from the labelled shapes (the ``transfer`` section)
        joins a ``nearest`` prior's pair as a third voter, faces then getting
        ``(2/3) * ((1 - w) * votes + w * lookup) + (1/3) * transfer`` (equal
        thirds at ``w = 0.5``): ``off`` (default: the pair alone), ``equal``
        (always), or ``auto`` (the labelled shapes decide, leaving each out in
        turn: transfer joins when, carried from the others, it labels the
        left-out shapes better than the lookup does; with one labelled shape
        there is nothing to leave out and it stays off;
        :func:`~mvdecor.protocols.methods.choose_transfer_vote`), or ``near``
        (always, but face by face: transfer's share ``(1/3) exp(-(d / r)^2)``
        falls with the distance ``d`` from the face's box-aligned centroid to
        the nearest labelled surface point, ``r`` = ``transfer_vote_radius``: it
        speaks where the test shape's surface lies on a labelled shape's after
        the alignment, and falls silent where their layouts part), or ``unseen``
        (only on the faces no test view sees that lie farther than
        ``unseen_transfer_distance`` from every face one sees: parts inside a
        closed object, such as an oven's tray, which the nearest seen face would
        label as the walls around them; everywhere else the pair decides alone,
        and an unseen face near a seen one, such as the back of a thin panel,
        still takes the label of the nearest seen face). It acts on a pair only
        (``prior_method: nearest`` at ``transfer_prior > 0``) and plays no part
        otherwise. Transfer is strong where a category's shapes
        share a layout after a box alignment and weak where they do not, so
        neither fixed choice suits every category.
    transfer_vote_radius : float
        ``r`` of the ``near`` transfer vote, in the units of the labelled shape
        normalised into the unit sphere (0.05: a face 0.05 away from every
        labelled point gets transfer at 1/e of its full third).
    unseen_transfer_distance : float
        With ``transfer_vote: unseen``: how far (as a share of the mesh's
        bounding-box diagonal, between face centroids) an unseen face must lie
        from every seen face for transfer to label it (0.01; the back of a thin
        panel lies well within it).
    shape_prototypes : float
        Weight ``w`` of the test shape's own class prototypes in a face-pooling
        nearest head's face distributions (``finetune.method: nearest`` with
        ``nearest_pooling: faces``): ``(1 - w) * bank + w * prototypes``, where the
        prototypes are the mean embeddings of the shape's faces weighted by the
        bank's answer (:func:`~mvdecor.models.nearest.shape_prototype_probabilities`).
        A transductive step: faces the labelled shapes' bank got wrong move to
        the class the rest of their part on this shape got. 0 (default) disables
        it (at 0.5 it cost 1 to 2.6 points of part mIoU on PartNet-Mobility and
        FAUST: it compares embeddings without the head's position cue); a
        network with a trained head refuses a weight > 0.
    position_alignment : str
        ``off`` (default): a face-pooling nearest head compares a test face's box
        coordinates with the labelled faces' as the bounding boxes map them;
        ``axes``: the test shape's coordinates are first carried onto the labelled
        shapes' by a per-axis scale and shift fitted to its faces' best matches in
        the bank, embedding and position together, ICP-style
        (:func:`~mvdecor.models.nearest.fit_box_alignment`): a part that sticks out
        of one shape's box no longer shifts every other part's coordinates. It acts
        where positions are weighed (``finetune.nearest_position_weight`` or
        ``nearest_position_candidates`` > 0) on whole shapes (``nearest_pooling:
        faces``), in the lookup alone and in the pair's lookup. Off in both presets:
        on PartNet-Mobility at k = 1 it moved the pair from 36.4 to 35.7, most of
        it on microwaves, whose best-matched faces lie on the front, so the fit
        of the depth axis rests on a thin slab and runs to its bound.
    smoothing : float
        Weight of the pairwise term of a Potts CRF on the mesh's face adjacency
        graph, solved by mean field (:mod:`mvdecor.inference.smoothing`), applied
        to the fused face distributions. 0 (default, the paper) disables it.
    smoothing_angle_degrees : float
        Dihedral angle scale of the pairwise weight ``exp(-(angle / scale)^2)``:
        neighbours across a sharper crease are coupled less (30).
    smoothing_iterations : int
        Mean-field rounds (10).
    """

    method: str = "entropy"
    gamma: float = 20.0
    batch_views: int = 16
    rings: int = 0
    segments: int = 0
    resolution: int = 0
    flip: bool = False
    transfer_prior: float = 0.0
    prior_method: str = "transfer"
    prior_weighting: str = "fixed"
    transfer_vote: str = "off"
    transfer_vote_radius: float = 0.05
    unseen_transfer_distance: float = 0.01
    shape_prototypes: float = 0.0
    position_alignment: str = "off"
    smoothing: float = 0.0
    smoothing_angle_degrees: float = 30.0
    smoothing_iterations: int = 10

    def __post_init__(self) -> None:
        section = "segment"
        at_least(self, section, 0, "gamma", "rings", "segments", "smoothing", "smoothing_iterations")
        at_least(self, section, 1, "batch_views")
        fraction(self, section, "transfer_prior", "shape_prototypes")
        one_of(self, section, "prior_method", PRIOR_METHODS)
        one_of(self, section, "transfer_vote", TRANSFER_VOTES)
        one_of(self, section, "prior_weighting", PRIOR_WEIGHTINGS)
        one_of(self, section, "position_alignment", POSITION_ALIGNMENTS)
        positive(self, section, "smoothing_angle_degrees", "transfer_vote_radius")
        at_least(self, section, 0, "unseen_transfer_distance")
        check(
            section,
            "resolution",
            self.resolution,
            self.resolution == 0 or (8 <= self.resolution <= MAX_RESOLUTION and self.resolution % 4 == 0),
            f"0 (the training's) or a multiple of 4 from 8 to {MAX_RESOLUTION} pixels",
        )


@dataclass(frozen=True)
class TransferConfig:
    """Learning-free label transfer (:mod:`mvdecor.inference.transfer`).

    Used by the ``transfer`` method of the few-shot protocol, by ``mvdecor
    transfer``, and by the segmenter's ``transfer_prior``.

    Attributes
    ----------
    align : str
        ``box`` (default: the target's bounding box mapped onto each reference's
        box axis by axis) or ``none`` (the normalised frames as they are).
    neighbours : int
        Nearest reference points per face (1: the nearest point's label; more:
        their label histogram, softer as a prior).
    samples : int
        Area-weighted surface samples per reference mesh, beside its face
        centroids (20,000).
    """

    align: str = "box"
    neighbours: int = 1
    samples: int = 20_000

    def __post_init__(self) -> None:
        at_least(self, "transfer", 1, "neighbours")
        at_least(self, "transfer", 0, "samples")
