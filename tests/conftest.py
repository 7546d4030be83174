"""Settings for the whole suite: strict JAX in the tests, a clean slate for the notebooks.

JAX raises on implicit rank promotion (``(B,) + (B, 1)`` silently making a ``(B, B)``
matrix is the classic ELBO bug). Strict dtype promotion is not set: Optax's own Adam
(``b1 ** count`` with an int32 count) fails under it. Warnings are errors
(``filterwarnings`` in ``pyproject.toml``).

The strict JAX settings live in this process only. The notebooks run under nbval in kernels
of their own, which inherit this process's environment: so that they run as they do in
JupyterLab, and so that the tests too give the same answer on every machine, the variables
that would silently change JAX, XLA or matplotlib are dropped before anything imports
them, and each kernel gets an empty IPython profile (no user startup scripts). The model zoo
(``$VAEKIT_ZOO``) is a temporary folder too, so the notebooks' dashboards train into it and the
suite writes nothing into the work tree.
"""

import os
import tempfile

_INHERITED_STATE = ("XLA_FLAGS", "MPLBACKEND", "IPYTHONDIR")
for _name in list(os.environ):
    if _name.startswith("JAX_") or _name in _INHERITED_STATE:
        del os.environ[_name]

import jax  # noqa: E402  (after the environment is cleaned: JAX reads it on import)

jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_configure(config):
    ipython_dir = tempfile.TemporaryDirectory(prefix="vaekit-ipython-")
    os.environ["IPYTHONDIR"] = ipython_dir.name
    config.add_cleanup(ipython_dir.cleanup)
    zoo_dir = tempfile.TemporaryDirectory(prefix="vaekit-zoo-")
    os.environ["VAEKIT_ZOO"] = zoo_dir.name  # vaekit.zoo.ROOT_ENV
    config.add_cleanup(zoo_dir.cleanup)
