"""Slider dashboards: one class per dashboard, each built in one line and displayed as it is.

In a notebook (``notebooks/dashboards.ipynb`` runs each of them)::

    import vaekit as vk
    vk.widgets.BetaLatentExplorer(beta=1.0, latent_dim=8)
    entry = vk.zoo.Zoo().load(beta=1.0, latent_dim=2)
    vk.widgets.LatentMap(entry)

Every move decodes with one compiled call and writes new PNG bytes into the dashboard's
existing image widgets; errors inside a callback are shown in the dashboard. A notebook
whose last expression is a dashboard is also a Voila app (``voila NOTEBOOK.ipynb``).
"""

from vaekit.widgets._dashboard import Dashboard as Dashboard
from vaekit.widgets.beta_latent import BetaLatentExplorer as BetaLatentExplorer
from vaekit.widgets.gallery import SampleGallery as SampleGallery
from vaekit.widgets.interpolation import Interpolation as Interpolation
from vaekit.widgets.interpolation import lerp as lerp
from vaekit.widgets.interpolation import slerp as slerp
from vaekit.widgets.latent_map import LatentMap as LatentMap
from vaekit.widgets.latent_map import inverse_cdf_grid as inverse_cdf_grid
from vaekit.widgets.traversal import LatentTraversal as LatentTraversal
from vaekit.widgets.traversal import kl_per_dimension as kl_per_dimension
