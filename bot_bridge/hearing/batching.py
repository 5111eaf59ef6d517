"""Several recordings through emotion2vec at once, each exactly as if it went alone.

Why: on a GPU one recording at a time leaves most of the chip idle, so
concurrent requests are gathered into batches of similar length. On a CPU
batching does not pay (measured: mixed lengths slower than one by one, equal
lengths 12 % faster), so the service batches only on CUDA.

Padding is not harmless in emotion2vec. Attention masks padded frames, but
the positional convolution stack in front of it (5 layers, kernel 19: about
+-45 frames) mixes whatever sits in the padding into the last ~0.9 s of
valid frames, and attention spreads the error (probabilities off by up to
0.006). A lone recording sees zeros beyond its end, so ``MaskedPositionalConv``
zeroes padded frames before each convolution layer; the rest of the forward
pass is funasr's own code given the padding mask.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

import numpy as np
import torch

# A batch holds recordings whose lengths differ by at most this factor, so padding wastes little.
BUCKET_RATIO = 1.25


class MaskedPositionalConv(torch.nn.Module):
    """funasr's positional convolution stack, with padded frames held at zero between layers.

    ``valid_frames`` (batch, 1, frames) is set only for the duration of a
    batched call; otherwise this is exactly the wrapped stack.
    """

    def __init__(self, stack: torch.nn.Sequential) -> None:
        super().__init__()
        first, *layers, last = stack
        if not (type(first).__name__ == type(last).__name__ == "TransposeLast"):
            raise TypeError("unexpected emotion2vec positional encoder layout; batching would not be exact")
        self.stack = stack
        self.layers = layers
        self.valid_frames: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.valid_frames is None:
            return self.stack(x)
        h = x.transpose(1, 2)
        for layer in self.layers:
            h = layer(h * self.valid_frames)
        return h.transpose(1, 2)


def install_masking(network) -> MaskedPositionalConv:
    encoder = network.modality_encoders["AUDIO"]
    if not isinstance(encoder.relative_positional_encoder, MaskedPositionalConv):
        encoder.relative_positional_encoder = MaskedPositionalConv(encoder.relative_positional_encoder)
    return encoder.relative_positional_encoder


def frame_features_batch(network, recordings: list[np.ndarray], device: str, normalize: bool) -> list[np.ndarray]:
    """Encoder frames for each recording, computed in one padded forward pass."""
    masking = install_masking(network)
    encoder = network.modality_encoders["AUDIO"]
    lengths = [len(r) for r in recordings]
    source = torch.zeros(len(recordings), max(lengths), device=device)
    for row, recording in enumerate(recordings):
        samples = torch.from_numpy(np.ascontiguousarray(recording, dtype=np.float32)).to(device)
        source[row, : len(samples)] = torch.nn.functional.layer_norm(samples, samples.shape) if normalize else samples
    padding = torch.arange(source.shape[1], device=device)[None, :] >= torch.tensor(lengths, device=device)[:, None]

    frames = [_frame_count(encoder.feature_enc_layers, n) for n in lengths]
    valid = torch.arange(max(frames), device=device)[None, :] < torch.tensor(frames, device=device)[:, None]
    masking.valid_frames = valid[:, None, :].to(source.dtype)
    try:
        output = network.extract_features(source, padding_mask=padding)["x"]
    finally:
        masking.valid_frames = None
    return [output[row, :count].float().cpu().numpy() for row, count in enumerate(frames)]


def length_buckets(lengths: list[int], max_batch: int) -> list[list[int]]:
    """Indices grouped so that each group's longest is at most ``BUCKET_RATIO`` x its shortest."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    buckets: list[list[int]] = []
    for index in order:
        if buckets and len(buckets[-1]) < max_batch and lengths[index] <= lengths[buckets[-1][0]] * BUCKET_RATIO:
            buckets[-1].append(index)
        else:
            buckets.append([index])
    return buckets


class MicroBatcher:
    """Gathers concurrent requests for up to ``wait_s`` and runs them as length buckets.

    ``run_batch`` is called from one dispatcher thread only, so the model
    needs no other lock.
    """

    def __init__(self, run_batch, max_batch: int, wait_s: float = 0.01) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._wait_s = wait_s
        self._requests: queue.Queue[tuple[np.ndarray, Future]] = queue.Queue()
        threading.Thread(target=self._dispatch, name="model-batcher", daemon=True).start()

    def submit(self, samples: np.ndarray) -> np.ndarray:
        future: Future = Future()
        self._requests.put((samples, future))
        return future.result()

    def _dispatch(self) -> None:
        while True:
            pending = [self._requests.get()]
            try:
                while len(pending) < self._max_batch:
                    pending.append(self._requests.get(timeout=self._wait_s))
            except queue.Empty:
                pass
            for bucket in length_buckets([len(samples) for samples, _ in pending], self._max_batch):
                self._run_bucket([pending[i] for i in bucket])

    def _run_bucket(self, requests: list[tuple[np.ndarray, Future]]) -> None:
        try:
            outputs = self._run_batch([samples for samples, _ in requests])
        except Exception as error:  # noqa: BLE001 - handed to every waiting caller
            for _, future in requests:
                future.set_exception(error)
            return
        for (_, future), output in zip(requests, outputs):
            future.set_result(output)


def _frame_count(conv_layers: list[tuple[int, int, int]], samples: int) -> int:
    for _, kernel, stride in conv_layers:
        samples = (samples - kernel) // stride + 1
    return samples
