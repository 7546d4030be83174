"""vaekit: Variational Autoencoders for computer vision, from the ELBO to segmentation, in Flax NNX.

Learners use ``import vaekit as vk``; the names below are the public surface.
"""

from vaekit import articles as articles
from vaekit import batched as batched
from vaekit import checkpoint as checkpoint
from vaekit import classical as classical
from vaekit import corruptions as corruptions
from vaekit import datasets as datasets
from vaekit import detection as detection
from vaekit import elbo as elbo
from vaekit import estimators as estimators
from vaekit import exercises as exercises
from vaekit import features as features
from vaekit import inference as inference
from vaekit import latent as latent
from vaekit import metrics as metrics
from vaekit import models as models
from vaekit import nn as nn
from vaekit import objectives as objectives
from vaekit import probunet as probunet
from vaekit import scenes as scenes
from vaekit import segmentation as segmentation
from vaekit import segmentation_vae as segmentation_vae
from vaekit import train as train
from vaekit import zoo as zoo
from vaekit.batched import decode as decode
from vaekit.batched import encode as encode
from vaekit.batched import reconstruct as reconstruct
from vaekit.checkpoint import CheckpointError as CheckpointError
from vaekit.datasets import Dataset as Dataset
from vaekit.datasets import DatasetError as DatasetError
from vaekit.datasets import load as load
from vaekit.elbo import ElboTerms as ElboTerms
from vaekit.elbo import bernoulli_log_likelihood as bernoulli_log_likelihood
from vaekit.elbo import elbo_terms as elbo_terms
from vaekit.elbo import gaussian_kl as gaussian_kl
from vaekit.elbo import gaussian_log_likelihood as gaussian_log_likelihood
from vaekit.elbo import iwae_bound as iwae_bound
from vaekit.elbo import reparameterize as reparameterize
from vaekit.models import Autoencoder as Autoencoder
from vaekit.models import Classifier as Classifier
from vaekit.models import ClassifierConfig as ClassifierConfig
from vaekit.models import ConfigError as ConfigError
from vaekit.models import VAE as VAE
from vaekit.models import VAEConfig as VAEConfig
from vaekit.models import count_parameters as count_parameters
from vaekit.models import make_vae as make_vae
from vaekit.objectives import ClassificationObjective as ClassificationObjective
from vaekit.objectives import ElboObjective as ElboObjective
from vaekit.objectives import ReconstructionObjective as ReconstructionObjective
from vaekit.probunet import ProbabilisticUNet as ProbabilisticUNet
from vaekit.probunet import ProbabilisticUNetConfig as ProbabilisticUNetConfig
from vaekit.probunet import ProbabilisticUNetObjective as ProbabilisticUNetObjective
from vaekit.scenes import AmbiguousScenes as AmbiguousScenes
from vaekit.scenes import SegmentationScenes as SegmentationScenes
from vaekit.scenes import ambiguous_scenes as ambiguous_scenes
from vaekit.scenes import segmentation_scenes as segmentation_scenes
from vaekit.segmentation import FCN as FCN
from vaekit.segmentation import FCNConfig as FCNConfig
from vaekit.segmentation import MultiScaleSegmentationObjective as MultiScaleSegmentationObjective
from vaekit.segmentation import SegmentationAutoencoder as SegmentationAutoencoder
from vaekit.segmentation import SegmentationAutoencoderConfig as SegmentationAutoencoderConfig
from vaekit.segmentation import SegmentationObjective as SegmentationObjective
from vaekit.segmentation import UNet as UNet
from vaekit.segmentation import UNetConfig as UNetConfig
from vaekit.segmentation_vae import SegmentationVAE as SegmentationVAE
from vaekit.segmentation_vae import SegmentationVAEConfig as SegmentationVAEConfig
from vaekit.segmentation_vae import SegmentationVAEObjective as SegmentationVAEObjective
from vaekit.train import TrainConfig as TrainConfig
from vaekit.train import TrainingDivergedError as TrainingDivergedError
from vaekit.train import evaluate as evaluate
from vaekit.train import fit as fit
from vaekit.train import make_optimizer as make_optimizer
from vaekit.train import train_step as train_step

__version__ = "0.1.0"


def __getattr__(name: str):
    # ipywidgets and matplotlib cost ~0.5 s to import: `vaekit.widgets` and `vaekit.plots` load on first use.
    if name == "widgets":
        import vaekit.widgets

        return vaekit.widgets
    if name == "plots":
        import vaekit.plots

        return vaekit.plots
    raise AttributeError(f"module 'vaekit' has no attribute {name!r}")
