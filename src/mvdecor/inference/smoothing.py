"""Smooth per-face class probabilities with a CRF on the mesh's face adjacency graph.

Voting views onto faces (:mod:`mvdecor.inference.fusion`) labels each face on
its own, so a few faces that the views got wrong stay wrong even inside a part
whose other faces all agree. Like other view-based mesh segmenters, we clean
this up with a Potts conditional random field over faces:

``E(l) = Σ_i U_i(l_i) + Σ_(i,j) w_ij [l_i ≠ l_j]``

* Unary ``U_i(c) = −log(p_ic + eps)``, ``p_i`` the face's (row-normalised)
  fused probabilities. Faces no view saw get a uniform unary, so their
  neighbours decide them.
* Pairwise, for faces ``i, j`` sharing an edge,
  ``w_ij = weight · exp(−(θ_ij / angle_scale)²) · ℓ_ij / mean(ℓ)``, with
  ``θ_ij`` the dihedral angle between the faces' normals and ``ℓ_ij`` the
  shared edge's length. Across a sharp crease ``w_ij ≈ 0``, so a label
  boundary there costs nothing and survives; inside a flat or smoothly curved
  part a face that disagrees with all its neighbours pays for every edge and is
  pulled to their label. The edge length makes the cost a boundary *length*,
  independent of how finely a region happens to be triangulated.

Exact minimisation is NP-hard for more than two labels, and we want
distributions, not just labels, out; mean-field inference (as in dense CRFs)
gives both cheaply: it iterates ``q_i ∝ exp(log p_i + Σ_j w_ij q_j)`` from
``q = p``. Each round sweeps the faces one independent set (no two faces
adjacent) at a time, a sparse matrix product per set, so it is vectorised
(about 0.1-0.4 s per round for 250k faces and 2-50 classes) and, unlike
updating all faces at once, cannot oscillate.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import scipy.sparse

#: Added to probabilities before the log of the unary, so a zero probability costs ``−log eps`` (finite).
DEFAULT_EPS = 1e-6

#: Angle given to pairs involving a degenerate (zero-area) face, whose normal is undefined:
#: half-way between coplanar and folded back, so such a face is neither glued nor cut off.
DEGENERATE_ANGLE = math.pi / 2


# ------------------------------------------------------------------ validation
def _check_faces(faces: np.ndarray, num_vertices: int | None = None) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be an (F, 3) array of vertex indices, got shape {faces.shape}")
    if faces.size and not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"faces must hold integer vertex indices, got dtype {faces.dtype}")
    faces = faces.astype(np.int64, copy=False)
    if faces.size and faces.min() < 0:
        raise ValueError("faces holds negative vertex indices")
    if num_vertices is not None and faces.size and faces.max() >= num_vertices:
        raise ValueError(f"faces refers to vertex {faces.max()}, but vertices has only {num_vertices} rows")
    return faces


def _check_vertices(vertices: np.ndarray) -> np.ndarray:
    vertices = np.asarray(vertices, dtype=np.float64)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must be a (V, 3) array, got shape {vertices.shape}")
    if not np.isfinite(vertices).all():
        raise ValueError("vertices must be finite")
    return vertices


def _check_adjacency(adjacency: np.ndarray, num_faces: int, name: str = "adjacency") -> np.ndarray:
    adjacency = np.asarray(adjacency)
    if adjacency.ndim != 2 or adjacency.shape[1] != 2:
        raise ValueError(f"{name} must be an (E, 2) array, got shape {adjacency.shape}")
    adjacency = adjacency.astype(np.int64, copy=False)
    if adjacency.size and (adjacency.min() < 0 or adjacency.max() >= num_faces):
        raise ValueError(f"{name} refers to indices outside [0, {num_faces})")
    return adjacency


# ------------------------------------------------------------------- geometry
def face_adjacency(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of faces that share an edge, with the shared edge.

    Faces are linked through vertex *indices*: faces that touch only through
    duplicated vertices (an unwelded mesh, e.g. separate part files
    concatenated) are not adjacent.

    Parameters
    ----------
    faces : (F, 3) int
        Triangles as vertex indices.

    Returns
    -------
    face_pairs : (E, 2) int64
        Indices ``(i, j)`` of two faces sharing an edge, ``i < j``, sorted by
        ``i`` then ``j``. An edge shared by ``k ≥ 3`` faces (non-manifold) links
        every pair of them, ``k (k − 1) / 2`` rows. Two faces sharing two or
        three edges (duplicated or folded triangles) appear once per shared
        edge. A face never pairs with itself (a degenerate face such as
        ``(a, a, b)`` lists ``(a, b)`` twice; that is not an adjacency).
    shared_edges : (E, 2) int64
        The vertex indices ``(a, b)``, ``a <= b``, of the edge each pair shares.

    Both are empty ``(0, 2)`` arrays when no two faces share an edge.
    """
    faces = _check_faces(faces)
    num_faces = len(faces)
    # Each face's three edges, endpoints sorted so both faces of an edge list it the same way.
    edges = np.stack([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], axis=1).reshape(-1, 2)
    edges.sort(axis=1)
    edge_faces = np.repeat(np.arange(num_faces, dtype=np.int64), 3)
    # Sort the edges so that copies of one edge are consecutive.
    order = np.lexsort((edges[:, 1], edges[:, 0]))
    edges, edge_faces = edges[order], edge_faces[order]

    # Copies of an edge form a run; positions s and s + d hold the same edge exactly
    # when they fall in one run, so pairing at offsets d = 1, 2, … until no run is
    # that long lists every pair of faces on every edge (k = 2 for manifold edges
    # stops after d = 2), without a Python loop over edges.
    pair_chunks, edge_chunks = [], []
    offset = 1
    while offset < len(edges):
        same = (edges[offset:] == edges[:-offset]).all(axis=1)
        if not same.any():
            break
        first = np.flatnonzero(same)
        pair_chunks.append(np.stack([edge_faces[first], edge_faces[first + offset]], axis=1))
        edge_chunks.append(edges[first])
        offset += 1
    if not pair_chunks:
        return np.zeros((0, 2), np.int64), np.zeros((0, 2), np.int64)

    face_pairs = np.concatenate(pair_chunks)
    shared_edges = np.concatenate(edge_chunks)
    face_pairs.sort(axis=1)
    keep = face_pairs[:, 0] != face_pairs[:, 1]
    face_pairs, shared_edges = face_pairs[keep], shared_edges[keep]
    # A stable, documented order, whatever the offsets the pairs were found at.
    order = np.lexsort((shared_edges[:, 1], shared_edges[:, 0], face_pairs[:, 1], face_pairs[:, 0]))
    return face_pairs[order], shared_edges[order]


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals of triangles, by the right-hand rule on their vertex order.

    Parameters
    ----------
    vertices : (V, 3) float
    faces : (F, 3) int

    Returns
    -------
    normals : (F, 3) float64
        Unit normals; all zero for degenerate faces.
    degenerate : (F,) bool
        Faces whose area is 0, or so small against their longest edge
        (``|e1 × e2| <= 1e-12 · max |e|²``) that the normal is rounding noise.
    """
    vertices = _check_vertices(vertices)
    faces = _check_faces(faces, len(vertices))
    corners = vertices[faces]  # (F, 3 corners, 3 coords)
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    twice_area = np.linalg.norm(cross, axis=1)
    longest_sq = (np.diff(corners[:, [0, 1, 2, 0]], axis=1) ** 2).sum(axis=2).max(axis=1)
    # Relative threshold: a sliver's cross product is dominated by rounding error.
    degenerate = twice_area <= 1e-12 * longest_sq
    normals = np.zeros_like(cross)
    np.divide(cross, twice_area[:, None], out=normals, where=~degenerate[:, None])
    return normals, degenerate


def dihedral_angles(vertices: np.ndarray, faces: np.ndarray, adjacency: np.ndarray) -> np.ndarray:
    """Angle between the normals of adjacent faces.

    Normals follow the faces' vertex order, so the winding must be consistent:
    a flipped face next to a coplanar one reads as folded back (``π``).

    Parameters
    ----------
    vertices : (V, 3) float
    faces : (F, 3) int
    adjacency : (E, 2) int
        Face index pairs, e.g. the first output of :func:`face_adjacency`.

    Returns
    -------
    (E,) float64
        Angles in radians in ``[0, π]``: 0 for coplanar faces, ``π/2`` across a
        right-angle fold, ``π`` for a face folded back onto its neighbour.
        Pairs involving a degenerate (zero-area) face, whose normal is
        undefined, get :data:`DEGENERATE_ANGLE` (``π/2``); never NaN.
    """
    normals, degenerate = face_normals(vertices, faces)
    adjacency = _check_adjacency(adjacency, len(normals))
    first, second = normals[adjacency[:, 0]], normals[adjacency[:, 1]]
    # atan2(|a × b|, a · b) stays accurate near 0 and π, where arccos(a · b) loses digits.
    sine = np.linalg.norm(np.cross(first, second), axis=1)
    cosine = (first * second).sum(axis=1)
    angles = np.arctan2(sine, cosine)
    angles[degenerate[adjacency[:, 0]] | degenerate[adjacency[:, 1]]] = DEGENERATE_ANGLE
    return angles


def pairwise_weights(
    vertices: np.ndarray,
    faces: np.ndarray,
    adjacency: np.ndarray,
    shared_edges: np.ndarray,
    *,
    weight: float = 1.0,
    angle_scale_degrees: float = 30.0,
) -> np.ndarray:
    """Potts coupling ``w_ij`` of each pair of adjacent faces.

    ``w_ij = weight · exp(−(θ_ij / angle_scale)²) · ℓ_ij / mean(ℓ)``, with
    ``θ_ij`` from :func:`dihedral_angles` and ``ℓ_ij`` the length of the shared
    edge; the mean is over all ``E`` pairs.

    Parameters
    ----------
    vertices : (V, 3) float
    faces : (F, 3) int
    adjacency : (E, 2) int
        Face index pairs, as from :func:`face_adjacency`.
    shared_edges : (E, 2) int
        Vertex index pairs of the shared edges, as from :func:`face_adjacency`.
    weight : float
        Overall strength, ``>= 0``.
    angle_scale_degrees : float
        Dihedral angle (degrees, ``> 0``) at which the coupling has fallen to
        ``1/e``; at three times it, ``e^-9 ≈ 1e-4``.

    Returns
    -------
    (E,) float64
        Non-negative couplings; all 0 if every shared edge has zero length.
    """
    weight = _check_weight(weight)
    angle_scale = _check_angle_scale(angle_scale_degrees)
    vertices = _check_vertices(vertices)
    faces = _check_faces(faces, len(vertices))
    adjacency = _check_adjacency(adjacency, len(faces))
    shared_edges = _check_adjacency(shared_edges, len(vertices), name="shared_edges")
    if len(shared_edges) != len(adjacency):
        raise ValueError(
            f"shared_edges has {len(shared_edges)} rows but adjacency has {len(adjacency)}; "
            "pass both outputs of face_adjacency"
        )
    angles = dihedral_angles(vertices, faces, adjacency)
    lengths = np.linalg.norm(vertices[shared_edges[:, 0]] - vertices[shared_edges[:, 1]], axis=1)
    mean_length = lengths.mean() if len(lengths) else 0.0
    if mean_length <= 0.0:
        return np.zeros(len(adjacency), np.float64)
    return weight * np.exp(-((angles / angle_scale) ** 2)) * (lengths / mean_length)


def _check_weight(weight: float) -> float:
    weight = float(weight)
    if not (math.isfinite(weight) and weight >= 0.0):
        raise ValueError(f"weight must be finite and >= 0, got {weight}")
    return weight


def _check_angle_scale(angle_scale_degrees: float) -> float:
    angle_scale_degrees = float(angle_scale_degrees)
    if not (math.isfinite(angle_scale_degrees) and angle_scale_degrees > 0.0):
        raise ValueError(f"angle_scale_degrees must be finite and > 0, got {angle_scale_degrees}")
    return math.radians(angle_scale_degrees)


# ------------------------------------------------------------------ inference
def smooth_face_probabilities(
    face_probs: np.ndarray,
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    weight: float = 1.0,
    angle_scale_degrees: float = 30.0,
    iterations: int = 10,
    seen: np.ndarray | None = None,
    eps: float = DEFAULT_EPS,
) -> np.ndarray:
    """Mean-field inference of the Potts CRF described in the module docstring.

    Parameters
    ----------
    face_probs : (F, C) float
        Non-negative per-face class scores, e.g. ``FusionResult.face_scores``.
        Rows need not sum to 1 (each is normalised). All-zero rows are unseen
        faces. Columns that are 0 for every face are excluded classes.
    vertices : (V, 3) float
    faces : (F, 3) int
        The mesh; adjacency is by shared vertex indices (see
        :func:`face_adjacency`) and dihedral angles assume consistent winding.
    weight : float
        Strength of the pairwise term, ``>= 0``; 0 returns the normalised
        input. With the default 1 a face on a flat triangulated grid is coupled
        to its three neighbours with a total of about 3, so it follows them
        when they outvote its own log-odds by that much.
    angle_scale_degrees : float
        Dihedral angle (degrees, ``> 0``) at which coupling falls to ``1/e``.
    iterations : int
        Mean-field rounds, ``>= 0``; 0 returns the normalised input.
    seen : (F,) bool, optional
        Faces whose row carries evidence (``FusionResult.seen``); the others
        get a uniform unary whatever their row holds. Default: rows with a
        positive sum.
    eps : float
        Added to each normalised probability in the unary, ``> 0``. A class
        with probability 0 at a face costs ``−log eps`` there (about 13.8 for
        the default), which neighbours practically never outweigh: raise it
        (e.g. to 0.2) to let them overrule hard (one-hot) votes.

    Returns
    -------
    (F, C) float32
        The smoothed class distributions: rows sum to 1 and are finite.
        Excluded classes' columns are exactly 0. Unseen faces that no coupled
        face reaches stay uniform over the remaining classes.

    Raises
    ------
    ValueError
        Naming the argument that has a wrong shape or value.
    """
    face_probs = np.asarray(face_probs)
    if face_probs.ndim != 2:
        raise ValueError(f"face_probs must be an (F, C) array, got shape {face_probs.shape}")
    if face_probs.dtype not in (np.float32, np.float64):
        face_probs = face_probs.astype(np.float64)
    if not np.isfinite(face_probs).all() or (face_probs < 0).any():
        raise ValueError("face_probs must be finite and non-negative")
    vertices = _check_vertices(vertices)
    faces = _check_faces(faces, len(vertices))
    num_faces, num_classes = face_probs.shape
    if len(faces) != num_faces:
        raise ValueError(f"face_probs has {num_faces} rows but faces has {len(faces)}")
    weight = _check_weight(weight)
    _check_angle_scale(angle_scale_degrees)
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
        raise ValueError(f"iterations must be an integer >= 0, got {iterations!r}")
    eps = float(eps)
    if not (math.isfinite(eps) and eps > 0.0):
        raise ValueError(f"eps must be finite and > 0, got {eps}")
    row_sums = face_probs.sum(axis=1, dtype=np.float64)
    if seen is None:
        seen = row_sums > 0
    else:
        seen = np.asarray(seen)
        if seen.shape != (num_faces,) or seen.dtype != np.bool_:
            raise ValueError(f"seen must be an ({num_faces},) bool array, got {seen.dtype} {seen.shape}")
        if (row_sums[seen] <= 0).any():
            raise ValueError("seen marks faces whose face_probs row is all zero")

    result = np.zeros((num_faces, num_classes), np.float32)
    # Classes no face has any score for stay out entirely, so their columns remain exactly 0.
    active = face_probs.any(axis=0)
    num_active = int(active.sum())
    if num_faces == 0 or num_active == 0:
        return result

    # float32 halves the memory of the (F, C) working arrays; the log-domain update needs no more.
    row_scale = np.zeros(num_faces, np.float64)
    np.divide(1.0, row_sums, out=row_scale, where=seen)
    selected = face_probs if active.all() else face_probs[:, active]
    probs = (selected * row_scale[:, None].astype(selected.dtype)).astype(np.float32, copy=False)
    probs[~seen] = 1.0 / num_active
    if weight > 0 and iterations > 0:
        probs = _mean_field(probs, seen, vertices, faces, weight, angle_scale_degrees, iterations, eps)
    result[:, active] = probs
    return result


def _independent_sets(face_pairs: np.ndarray, num_faces: int) -> list[np.ndarray]:
    """Split the faces into classes with no adjacent pair inside a class (a graph colouring).

    Jones–Plassmann rounds: every still-uncoloured face whose (fixed, pseudo-random)
    priority beats all its uncoloured neighbours joins this round's class. Each round
    is a few vectorised passes over the pairs; random priorities keep the number of
    classes small (about 10 for a few hundred thousand faces of degree 3).

    Parameters
    ----------
    face_pairs : (E, 2) int64
    num_faces : int

    Returns
    -------
    list of (F_k,) int64
        Sorted face indices of each class; together they hold every face once.
    """
    # Fixed seed: the same mesh always gets the same schedule, hence the same result.
    priority = np.random.default_rng(0).permutation(num_faces)
    uncoloured = np.ones(num_faces, bool)
    pairs = face_pairs
    classes = []
    while uncoloured.any():
        pairs = pairs[uncoloured[pairs[:, 0]] & uncoloured[pairs[:, 1]]]
        beaten = np.zeros(num_faces, bool)
        beaten[np.where(priority[pairs[:, 0]] < priority[pairs[:, 1]], pairs[:, 0], pairs[:, 1])] = True
        members = np.flatnonzero(uncoloured & ~beaten)
        classes.append(members)
        uncoloured[members] = False
    return classes


def _mean_field(
    probs: np.ndarray,
    seen: np.ndarray,
    vertices: np.ndarray,
    faces: np.ndarray,
    weight: float,
    angle_scale_degrees: float,
    iterations: int,
    eps: float,
) -> np.ndarray:
    """Run ``iterations`` mean-field sweeps from ``probs`` ((F, C) float32, rows normalised).

    A sweep updates every face once, one independent set of faces at a time
    (block coordinate descent). Updating all faces at once instead oscillates:
    on a triangle mesh's face graph (bipartite on a regular grid), alternating
    faces that lean to different classes swap labels every round once the
    coupling outweighs their unaries, already at ``weight = 1``. Faces in one
    set share no edge, so each set's update is the exact minimiser of the
    mean-field free energy given the rest, which therefore never increases.
    """
    face_pairs, shared_edges = face_adjacency(faces)
    if len(face_pairs) == 0:
        return probs
    couplings = pairwise_weights(
        vertices, faces, face_pairs, shared_edges, weight=weight, angle_scale_degrees=angle_scale_degrees
    )
    num_faces = len(probs)
    # Work in an order where each independent set is a contiguous run of rows, so a
    # set's update reads and writes slices instead of gathering and scattering rows.
    independent_sets = _independent_sets(face_pairs, num_faces)
    order = np.concatenate(independent_sets)
    position = np.empty(num_faces, np.int64)
    position[order] = np.arange(num_faces)
    bounds = np.cumsum([0] + [len(members) for members in independent_sets])
    # Symmetric (F, F) coupling matrix in that order; CSR sums duplicate (i, j)
    # entries, i.e. the couplings of faces that share more than one edge.
    rows = position[np.concatenate([face_pairs[:, 0], face_pairs[:, 1]])]
    cols = position[np.concatenate([face_pairs[:, 1], face_pairs[:, 0]])]
    coupling_matrix = scipy.sparse.csr_matrix(
        (np.concatenate([couplings, couplings]).astype(np.float32), (rows, cols)),
        shape=(num_faces, num_faces),
    )
    beliefs = probs[order]
    # −unary; unseen faces get 0 in every class (uniform), so only neighbours move them.
    log_probs = np.where(seen[order, None], np.log(beliefs + np.float32(eps)), np.float32(0.0))
    blocks = [(start, stop, coupling_matrix[start:stop]) for start, stop in itertools.pairwise(bounds)]
    for _ in range(iterations):
        for start, stop, block_couplings in blocks:
            logits = block_couplings @ beliefs
            logits += log_probs[start:stop]
            # Subtracting the row maximum keeps exp() in range; it cancels in the normalisation.
            logits -= logits.max(axis=1, keepdims=True)
            np.exp(logits, out=logits)
            logits /= logits.sum(axis=1, keepdims=True)
            beliefs[start:stop] = logits
    return beliefs[position]
