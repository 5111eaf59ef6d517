"""What loading any funasr model needs, done once for emotion2vec+ and SenseVoice alike.

funasr's ``AutoModel`` builds a network from a model directory and fills
it from ``model.pt``. Three of its habits need guarding, whatever the model:

* it prints its version and notices to stdout, which belongs to
  ``predict --json`` (``funasr_prints_logged`` makes them DEBUG log lines);
* it sets torch's process-wide thread count to its ``ncpu`` argument, so
  every model of a process must be given the same number
  (``torch_threads``), or the last one loaded would change the others';
* a checkpoint that does not fit the network only logs a line and keeps
  random weights, so the keys and shapes are checked here
  (``check_checkpoint_matches``).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelUnavailable

if TYPE_CHECKING:
    from ..config import ModelSettings

log = logging.getLogger(__name__)


def build_with_funasr(directory: Path, device: str, threads: int, **options):
    """funasr's ``AutoModel`` for a local model directory, offline, quiet on stdout."""
    with funasr_prints_logged():
        from funasr import AutoModel

        try:
            return AutoModel(
                model=str(directory),
                disable_update=True,
                device=device,
                ncpu=threads,
                disable_pbar=True,
                log_level=logging.getLevelName(logging.getLogger().getEffectiveLevel()),
                **options,
            )
        except Exception as error:  # noqa: BLE001 - funasr raises bare errors of every kind
            raise ModelUnavailable(f"funasr could not load {directory}: {error}") from error


@contextlib.contextmanager
def funasr_prints_logged():
    """Whatever funasr prints while this runs becomes DEBUG log lines.

    On import funasr prints its version and, where no ``ffmpeg`` program is
    installed, advice to install one; bot-bridge decodes with PyAV's own
    FFmpeg libraries and never lets funasr read a file, so that advice is
    wrong here, and stdout is where ``predict --json`` writes its results.
    """
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            yield
    finally:
        for line in printed.getvalue().splitlines():
            if line.strip():
                log.debug("funasr printed: %s", line.strip())


def torch_threads(settings: ModelSettings) -> int:
    """Torch threads of this process: ``model.threads``, else every core. Every model gets this many."""
    return settings.threads or os.cpu_count() or 1


def resolve_device(requested: str) -> str:
    """``cpu`` or ``cuda`` for the ``model.device`` setting; ``cuda`` without CUDA is an error."""
    import torch

    if requested == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        # funasr would silently fall back to the CPU; an explicit request deserves the truth.
        raise ModelUnavailable(
            "model.device is cuda but torch sees no CUDA device "
            f"(torch {torch.__version__}); set BOT_BRIDGE_DEVICE=auto or cpu, or install a CUDA build of torch"
        )
    return "cpu"


def check_checkpoint_matches(checkpoint: Path, network) -> None:
    """Refuse weights that do not fit the network: funasr would keep random values silently."""
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    state = {key.removeprefix("module."): value for key, value in state.items()}
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    wrong_shape = sorted(k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or wrong_shape:
        problems = [f"{len(missing)} of {len(expected)} weights missing"] if missing else []
        if wrong_shape:
            problems.append(f"{len(wrong_shape)} with the wrong shape")
        example = (missing + wrong_shape)[0]
        raise ModelUnavailable(
            f"{checkpoint} does not match the network described by its config.yaml "
            f"({', '.join(problems)}; e.g. {example}). funasr would fill the gaps with random "
            "values and every answer would be wrong; use the config.yaml published with these weights"
        )


def release_load_memory() -> None:
    """Give back the gigabytes that torch.load plus funasr's deepcopy leave in the heap."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
