"""mvdecor: few-shot fine-grained 3D mesh segmentation by multi-view dense
correspondence learning (MvDeCor, Sharma et al., ECCV 2022).

Sub-packages follow the pipeline:

- :mod:`mvdecor.data`: meshes, labels, loaders and built-in synthetic shapes.
- :mod:`mvdecor.render`: cameras, the ray-cast renderer and the render store.
"""

from mvdecor.data.mesh import LabelledMesh, Normalization
from mvdecor.errors import MvDecorError

__version__ = "0.1.0"

__all__ = ["LabelledMesh", "MvDecorError", "Normalization", "__version__"]
