"""Settings for the whole suite: strict JAX in the tests, a clean slate for the notebooks.

JAX raises on implicit rank promotion (``(B,) + (B, 1)`` silently making a ``(B, B)``
matrix is the classic ELBO bug). Strict dtype promotion is not set: Optax's own Adam
(``b1 ** count`` with an int32 count) fails under it. Warnings are errors
(``filterwarnings`` in ``pyproject.toml``).

The strict JAX settings live in this process only. The notebooks run under nbval in kernels
of their own, which inherit this process's environment: so that they run as they do in
JupyterLab, and so that the tests too give the same answer on every machine, the variables
that would silently change JAX, XLA or matplotlib are dropped before anything imports
them, and each kernel gets an empty IPython profile (no user startup scripts).
"""

import os
import sys
import tempfile
import traceback

_INHERITED_STATE = ("XLA_FLAGS", "MPLBACKEND", "IPYTHONDIR")
for _name in list(os.environ):
    if _name.startswith("JAX_") or _name in _INHERITED_STATE:
        del os.environ[_name]

import jax  # noqa: E402  (after the environment is cleaned: JAX reads it on import)
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")



def _is_orbax_loop_race(unraisable) -> bool:
    """A worker thread waking an asyncio loop that its owner already closed (``call_soon_threadsafe``).

    Seen once in a full run, at the setup of the test after the checkpoint tests: Orbax saves
    and restores on background threads with asyncio loops of its own, the likely source. The
    checkpoints are complete by then (``tests/test_checkpoint.py`` restores them bit-exact).
    """
    error = unraisable.exc_value
    return (
        isinstance(error, RuntimeError)
        and str(error) == "Event loop is closed"
        and any(frame.name == "call_soon_threadsafe" for frame in traceback.extract_tb(unraisable.exc_traceback))
    )


@pytest.hookimpl(trylast=True)  # after pytest's unraisable-exception plugin has installed its hook
def pytest_configure(config):
    ipython_dir = tempfile.TemporaryDirectory(prefix="vaekit-ipython-")
    os.environ["IPYTHONDIR"] = ipython_dir.name
    config.add_cleanup(ipython_dir.cleanup)
    # Every other unraisable exception still reaches pytest's hook and fails the test.
    pytest_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None if _is_orbax_loop_race(unraisable) else pytest_hook(unraisable)
