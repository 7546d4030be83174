r"""Exercise checkers: the learner writes one function, a checker says whether it is right and which mistake it sees.

In a chapter, an exercise is a function whose body lies between two markers, followed by its checker::

    def gaussian_kl(mean, log_var):
        ### BEGIN SOLUTION
        return 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(log_var) - log_var - 1.0, axis=-1)
        ### END SOLUTION

    vk.exercises.check_gaussian_kl(gaussian_kl)

The checker returns a :class:`Feedback`: a coloured box in a notebook, plain text in a terminal.
The student copy of the chapter (:func:`student_copy`) has ``raise NotImplementedError()`` in place
of the body, and the checker then says "not yet implemented"; the cells after an exercise use the
library's own function, so a student copy runs to the end either way.

How a checker works (the pattern for a chapter author who adds one):

1. It calls the learner's function on inputs it chooses: random ones with fixed seeds, in several
   shapes and batch sizes (a batch of 1 too), and edge cases where a formula that is right on paper
   fails in ``float32`` (logits of ±120, log-variances of ±100, log-weights of −1000).
2. It compares each answer with the library's reference (:mod:`vaekit.elbo`, :mod:`vaekit.latent`)
   within ``float32`` tolerance; where the answer is random, it checks its statistics instead, and
   where the exercise is about gradients, the gradients too.
3. When an answer differs, it computes each mistake of its catalogue (the wrong variants learners
   write) on the same inputs: a variant that gives the learner's answers names the mistake. Failing
   that, it shows the first input where the answer differs, and by how much.
4. It never raises into the notebook: a stub that raises ``NotImplementedError`` gives
   ``mistake="not_implemented"``; any other exception is reported with its type, its message and a
   hint on how the function is called.

A new checker that compares with a reference is a few lines: decorate ``check_x(fn)`` with
``@checker(call, {id: description})`` and return ``compare(fn, call=..., arg_names=..., reference=...,
cases=[Case(args, description, row_axes)], mistakes={id: Mistake(wrong_variant, message)},
edges=(Edge(case, id, message),), passed=...)``; a random or gradient answer needs its own tests, as
:func:`check_reparameterize` has. Each mistake gets a test with the wrong function written as a learner
would write it (``tests/test_exercises.py``).

Every checker lists its catalogue as ``check_x.mistakes``, ``{id: what the learner did}`` (the ids a
:class:`Feedback` can carry besides the generic ones in :data:`GENERIC_MISTAKES`); a chapter's notes
for the teacher can quote it.
"""

from vaekit.exercises._core import GENERIC_MISTAKES as GENERIC_MISTAKES
from vaekit.exercises._core import NOT_IMPLEMENTED as NOT_IMPLEMENTED
from vaekit.exercises._core import Feedback as Feedback
from vaekit.exercises.checks_elbo import check_active_units as check_active_units
from vaekit.exercises.checks_elbo import check_gaussian_kl as check_gaussian_kl
from vaekit.exercises.checks_elbo import check_iwae_bound as check_iwae_bound
from vaekit.exercises.checks_elbo import check_negative_elbo as check_negative_elbo
from vaekit.exercises.checks_elbo import check_prior_sample as check_prior_sample
from vaekit.exercises.checks_elbo import check_reconstruction_loss as check_reconstruction_loss
from vaekit.exercises.checks_elbo import check_reparameterize as check_reparameterize
from vaekit.exercises.checks_latent import check_inverse_cdf_grid as check_inverse_cdf_grid
from vaekit.exercises.checks_latent import check_slerp as check_slerp
from vaekit.exercises.checks_quality import check_frechet_distance as check_frechet_distance
from vaekit.exercises.checks_quality import check_psnr as check_psnr
from vaekit.exercises.checks_segmentation import check_box_iou as check_box_iou
from vaekit.exercises.checks_segmentation import check_conditional_negative_elbo as check_conditional_negative_elbo
from vaekit.exercises.checks_segmentation import check_dice as check_dice
from vaekit.exercises.checks_segmentation import check_ged as check_ged
from vaekit.exercises.checks_segmentation import check_iou as check_iou
from vaekit.exercises.student import student_copy as student_copy
