"""Measures of images, samples and masks.

- :mod:`vaekit.metrics.quality`: how close a reconstruction is to its original (PSNR, SSIM), how
  much fine detail an image has (sharpness), and how much a set of samples looks like the data
  (Fréchet distance, precision and recall on a feature network's features).
"""

from vaekit.metrics.quality import frechet_distance as frechet_distance
from vaekit.metrics.quality import gaussian_window as gaussian_window
from vaekit.metrics.quality import precision_recall as precision_recall
from vaekit.metrics.quality import psnr as psnr
from vaekit.metrics.quality import sharpness as sharpness
from vaekit.metrics.quality import ssim as ssim
