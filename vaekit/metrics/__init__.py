"""Measures of images, samples and masks.

- :mod:`vaekit.metrics.quality`: how close a reconstruction is to its original (PSNR, SSIM), how
  much fine detail an image has (sharpness) and how much of it is a period-2 pattern
  (checkerboard), and how much a set of samples looks like the data (Fréchet distance,
  precision and recall on a feature network's features).
- :mod:`vaekit.metrics.segmentation`: how well a predicted mask matches its annotation (IoU, Dice,
  boundary F-score, mean IoU over classes, box IoU) and how well a set of sampled masks matches a
  distribution of annotations (generalized energy distance, sample diversity, matched IoU).
"""

from vaekit.metrics.quality import checkerboard as checkerboard
from vaekit.metrics.quality import frechet_distance as frechet_distance
from vaekit.metrics.quality import gaussian_window as gaussian_window
from vaekit.metrics.quality import precision_recall as precision_recall
from vaekit.metrics.quality import psnr as psnr
from vaekit.metrics.quality import sharpness as sharpness
from vaekit.metrics.quality import ssim as ssim
from vaekit.metrics.segmentation import boundaries as boundaries
from vaekit.metrics.segmentation import boundary_f_score as boundary_f_score
from vaekit.metrics.segmentation import box_area as box_area
from vaekit.metrics.segmentation import box_iou as box_iou
from vaekit.metrics.segmentation import confusion_matrix as confusion_matrix
from vaekit.metrics.segmentation import dice as dice
from vaekit.metrics.segmentation import ged_optimum as ged_optimum
from vaekit.metrics.segmentation import generalized_energy_distance as generalized_energy_distance
from vaekit.metrics.segmentation import hungarian_iou as hungarian_iou
from vaekit.metrics.segmentation import iou as iou
from vaekit.metrics.segmentation import isolated_components as isolated_components
from vaekit.metrics.segmentation import mean_iou as mean_iou
from vaekit.metrics.segmentation import pairwise_distances as pairwise_distances
from vaekit.metrics.segmentation import per_class_iou as per_class_iou
from vaekit.metrics.segmentation import pixel_accuracy as pixel_accuracy
from vaekit.metrics.segmentation import sample_diversity as sample_diversity
