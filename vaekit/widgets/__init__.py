"""Slider dashboards: one class per dashboard, each built in one line and displayed as it is.

In a notebook (``notebooks/dashboards.ipynb`` runs each of them)::

    import vaekit as vk
    vk.widgets.BetaLatentExplorer(beta=1.0, latent_dim=8)
    entry = vk.zoo.Zoo().load(beta=1.0, latent_dim=2)
    vk.widgets.LatentMap(entry)

Every model dashboard takes any model with ``encode`` and ``decode`` (:class:`vaekit.VAE`,
:class:`vaekit.Autoencoder`, a module of one's own) or a zoo entry. Every move decodes with one
compiled call and writes new PNG bytes into the dashboard's existing image widgets; errors
inside a callback are shown in the dashboard, and training shows its progress in the
dashboard's own bar. The maths they draw (paths, grids, KL per dimension) is
:mod:`vaekit.latent`. A notebook whose last expression is a dashboard is also a Voila app
(``voila NOTEBOOK.ipynb``).

:class:`ImageDegradation` needs no model: it blurs, noises and compresses real images and shows
how PSNR, SSIM and sharpness (:mod:`vaekit.metrics`) respond.
"""

from vaekit.widgets._dashboard import Dashboard as Dashboard
from vaekit.widgets.beta_latent import BetaLatentExplorer as BetaLatentExplorer
from vaekit.widgets.degradation import ImageDegradation as ImageDegradation
from vaekit.widgets.gallery import SampleGallery as SampleGallery
from vaekit.widgets.interpolation import Interpolation as Interpolation
from vaekit.widgets.iwae import IwaeGap as IwaeGap
from vaekit.widgets.latent_map import LatentMap as LatentMap
from vaekit.widgets.mask_gallery import MaskGallery as MaskGallery
from vaekit.widgets.mask_samples import MaskSamples as MaskSamples
from vaekit.widgets.scene_segmentation import SceneSegmentation as SceneSegmentation
from vaekit.widgets.traversal import LatentTraversal as LatentTraversal
