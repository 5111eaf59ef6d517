"""Batched inference (the GPU path) gives what one-by-one inference gives, checked on the CPU."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from bot_bridge.config import ModelSettings
from bot_bridge.hearing.batching import frame_features_batch, length_buckets
from bot_bridge.hearing.model import EmotionModel
from tests.audio_fixtures import speech_clip

MIXED_SECONDS = (1.3, 3.0, 7.7, 10.0)


@pytest.fixture(scope="module")
def recordings():
    return [speech_clip(seconds) for seconds in MIXED_SECONDS]


def test_a_mixed_length_batch_equals_one_by_one(tiny_model, recordings):
    alone = [tiny_model.frame_features(r) for r in recordings]

    batched = tiny_model.frame_features_batch(recordings)

    for single, together in zip(alone, batched):
        assert together.shape == single.shape
        assert np.abs(together - single).max() <= 1e-4
        scores_alone = tiny_model.classify(single.mean(axis=0))
        scores_together = tiny_model.classify(together.mean(axis=0))
        assert np.abs(scores_alone - scores_together).max() <= 1e-4


def test_without_the_positional_masking_padding_leaks_into_valid_frames(tiny_model, recordings):
    """Why the masking exists: funasr's own padding mask alone is not exact."""
    network = tiny_model._network
    shortest, longest = recordings[0], recordings[-1]
    source = torch.zeros(2, len(longest))
    for row, samples in enumerate((shortest, longest)):
        x = torch.from_numpy(samples)
        source[row, : len(x)] = torch.nn.functional.layer_norm(x, x.shape)
    padding = torch.arange(source.shape[1])[None, :] >= torch.tensor([len(shortest), len(longest)])[:, None]
    with torch.no_grad():
        unmasked = network.extract_features(source, padding_mask=padding)["x"][0].numpy()
    alone = tiny_model.frame_features(shortest)

    assert np.abs(unmasked[: len(alone)] - alone).max() > 1e-3


def test_batched_calls_from_many_threads_get_their_own_answers(tiny_model_dir, tiny_model):
    similar = [speech_clip(seconds) for seconds in (3.0, 3.2, 3.4, 3.6)]  # one length bucket
    batching = EmotionModel.load(ModelSettings(name=str(tiny_model_dir), batch_size=4, batch_wait_ms=200))
    batch_sizes: list[int] = []
    run_batch = batching._batcher._run_batch
    batching._batcher._run_batch = lambda batch: (batch_sizes.append(len(batch)), run_batch(batch))[1]
    answers: dict[int, np.ndarray] = {}

    def ask(index: int) -> None:
        answers[index] = batching.frame_features(similar[index])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(similar))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert max(batch_sizes) > 1, f"no batch formed: {batch_sizes}"
    for index, recording in enumerate(similar):
        assert np.abs(answers[index] - tiny_model.frame_features(recording)).max() <= 1e-4


def test_length_buckets_keep_similar_lengths_together():
    lengths = [16000, 100000, 17000, 300000, 19000, 110000, 320000]
    buckets = length_buckets(lengths, max_batch=2)

    assert sorted(i for bucket in buckets for i in bucket) == list(range(len(lengths)))
    for bucket in buckets:
        assert len(bucket) <= 2
        sizes = [lengths[i] for i in bucket]
        assert max(sizes) <= 1.25 * min(sizes)


def test_one_recording_alone_is_not_touched_by_the_masking_wrapper(tiny_model, recordings):
    before = tiny_model.frame_features(recordings[1])
    with torch.no_grad():
        (batched,) = frame_features_batch(tiny_model._network, [recordings[1]], "cpu", True)
    assert np.abs(batched - before).max() <= 1e-5
    assert np.array_equal(tiny_model.frame_features(recordings[1]), before)
