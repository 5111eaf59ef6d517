"""The model layer: emotion2vec+ through funasr, with random-weight models in the published format."""

from __future__ import annotations

import contextlib
import functools
import io
import shutil
import time

import numpy as np
import pytest
import torch
import yaml

from bot_bridge.hearing import model_files
from bot_bridge.config import ModelSettings
from bot_bridge.emotions import EMOTION_KEYS
from bot_bridge.errors import ModelUnavailable
from bot_bridge.hearing.analysis import AnalysisOptions, analyse
from bot_bridge.hearing.model import EmotionModel
from bot_bridge.hearing.model_files import PRESETS, make_random_model, resolve_model_dir
from bot_bridge.hearing.vad import detect_speech, split_at_pauses
from tests.audio_fixtures import encode, speech_clip


def funasr_generate(model_dir, samples: np.ndarray) -> dict:
    """What a user of funasr gets for this audio: AutoModel.generate on the same 16 kHz samples."""
    return _funasr_automodel(str(model_dir)).generate(samples, granularity="utterance", extract_embedding=True)[0]


@functools.cache
def _funasr_automodel(model_dir: str):
    from funasr import AutoModel

    with contextlib.redirect_stdout(io.StringIO()):
        return AutoModel(model=model_dir, disable_update=True, device="cpu", ncpu=2, disable_pbar=True)


@pytest.mark.parametrize("seconds", [3.0, 12.5])
def test_utterance_scores_and_embedding_equal_funasr_generate(tiny_model_dir, tiny_model, seconds):
    samples = speech_clip(seconds)
    expected = funasr_generate(tiny_model_dir, samples)

    result = analyse(encode(samples, 16000, "wav_f32"), tiny_model, AnalysisOptions(embedding=True))

    ours = np.array([result.scores[key] for key in EMOTION_KEYS])
    assert [label.split("/")[-1] for label in expected["labels"]] == [*EMOTION_KEYS[:-1], "<unk>"]
    assert np.abs(ours - np.array(expected["scores"])).max() <= 1e-5
    assert np.abs(result.embedding - expected["feats"]).max() <= 1e-5
    assert result.embedding.shape == (32,)


def test_long_audio_scores_are_the_duration_weighted_mean_of_funasrs_scores_per_chunk(tiny_model_dir, tiny_model):
    """Audio longer than model.max_chunk_s is cut at pauses; each chunk is what funasr would score on its own."""
    samples, max_chunk_s = speech_clip(14.0), 5.0
    chunks = split_at_pauses(detect_speech(samples), len(samples) / 16000, max_chunk_s)
    lengths = [end - start for start, end in chunks]
    assert len(chunks) >= 3 and max(lengths) - min(lengths) > 0.5, chunks  # unequal: the weights matter
    per_chunk = [funasr_generate(tiny_model_dir, samples[round(start * 16000) : round(end * 16000)])["scores"]
                 for start, end in chunks]

    result = analyse(encode(samples, 16000, "wav_f32"), tiny_model, AnalysisOptions(max_chunk_s=max_chunk_s))

    expected = np.average(np.array(per_chunk), axis=0, weights=lengths)
    assert np.abs(np.array([result.scores[key] for key in EMOTION_KEYS]) - expected).max() <= 1e-5
    assert np.abs(np.array(per_chunk).mean(axis=0) - expected).max() > 1e-4, "the plain mean would differ"
    assert f"split at pauses into {len(chunks)} chunks of at most 5 s" in result.log


def test_old_token_files_with_unuse_placeholders_give_zero_to_missing_emotions(tmp_path, tiny_model_dir):
    seed_style = tmp_path / "seed-style"
    shutil.copytree(tiny_model_dir, seed_style)
    (seed_style / "tokens.txt").write_text(
        "\n".join("生气/angry unuse_0 unuse_1 开心/happy 中立/neutral unuse_2 难过/sad unuse_3 <unk>".split()),
        encoding="utf-8",
    )
    model = EmotionModel.load(ModelSettings(name=str(seed_style)))
    samples = speech_clip(3.0)

    scores = dict(zip(EMOTION_KEYS, model.classify(model.frame_features(samples).mean(axis=0))[0]))
    expected = funasr_generate(seed_style, samples)

    assert [scores[k] for k in ("disgusted", "fearful", "other", "surprised")] == [0, 0, 0, 0]
    assert sum(scores.values()) == pytest.approx(1.0)
    known = dict(zip((label.split("/")[-1] for label in expected["labels"]), expected["scores"]))
    assert known.keys() == {"angry", "happy", "neutral", "sad", "<unk>"}
    for key, value in known.items():
        assert scores["unknown" if key == "<unk>" else key] == pytest.approx(value, abs=1e-6)


def test_labels_are_read_by_name_not_by_position(tmp_path, tiny_model_dir):
    reordered = tmp_path / "reordered"
    shutil.copytree(tiny_model_dir, reordered)
    tokens = (reordered / "tokens.txt").read_text(encoding="utf-8").split("\n")
    (reordered / "tokens.txt").write_text("\n".join(reversed(tokens)), encoding="utf-8")
    original = EmotionModel.load(ModelSettings(name=str(tiny_model_dir)))
    flipped = EmotionModel.load(ModelSettings(name=str(reordered)))
    pooled = original.frame_features(speech_clip(2.0)).mean(axis=0)

    with torch.inference_mode():
        head_rows = torch.softmax(original._network.proj(torch.from_numpy(pooled[None]))[0], dim=-1).numpy()

    # Same head, labels listed backwards: head row i now belongs to the emotion listed i-th from the end.
    assert np.allclose(flipped.classify(pooled)[0], head_rows[::-1], atol=1e-7)
    assert np.allclose(original.classify(pooled)[0], head_rows, atol=1e-7)


def test_a_checkpoint_that_does_not_fit_the_config_is_refused(tmp_path, tiny_model_dir):
    deeper = tmp_path / "deeper"
    shutil.copytree(tiny_model_dir, deeper)
    config = yaml.safe_load((deeper / "config.yaml").read_text(encoding="utf-8"))
    config["model_conf"]["depth"] = 3  # the checkpoint has 2 blocks
    (deeper / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")

    with pytest.raises(ModelUnavailable, match=r"weights missing.*blocks\.2"):
        EmotionModel.load(ModelSettings(name=str(deeper)))


def test_a_checkpoint_with_wrong_shapes_is_refused(tmp_path, tiny_model_dir):
    wider = tmp_path / "wider"
    shutil.copytree(tiny_model_dir, wider)
    config = yaml.safe_load((wider / "config.yaml").read_text(encoding="utf-8"))
    config["model_conf"]["mlp_ratio"] = 2.0
    (wider / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")

    with pytest.raises(ModelUnavailable, match="wrong shape"):
        EmotionModel.load(ModelSettings(name=str(wider)))


def test_a_hub_id_without_network_fails_fast_and_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setitem(model_files.HUB_HOSTS, "ms", "modelscope.invalid")  # never resolves (RFC 2606)

    started = time.perf_counter()
    with pytest.raises(ModelUnavailable) as raised:
        resolve_model_dir("iic/emotion2vec_plus_large", "ms")

    assert time.perf_counter() - started < 5
    assert "bot-bridge model download iic/emotion2vec_plus_large" in raised.value.detail
    assert "BOT_BRIDGE_MODEL" in raised.value.detail
    assert not (tmp_path / "empty-cache").exists()


def test_a_model_already_in_the_hub_cache_loads_without_network(tmp_path, monkeypatch, tiny_model_dir):
    cache = tmp_path / "cache"
    shutil.copytree(tiny_model_dir, cache / "models" / "iic" / "emotion2vec_plus_base")
    monkeypatch.setenv("MODELSCOPE_CACHE", str(cache))
    monkeypatch.setitem(model_files.HUB_HOSTS, "ms", "modelscope.invalid")

    assert resolve_model_dir("iic/emotion2vec_plus_base") == cache / "models" / "iic" / "emotion2vec_plus_base"


def test_an_incomplete_model_directory_names_the_missing_file(tmp_path, tiny_model_dir):
    partial = tmp_path / "partial"
    shutil.copytree(tiny_model_dir, partial)
    (partial / "tokens.txt").unlink()

    with pytest.raises(ModelUnavailable, match="lacks tokens.txt"):
        EmotionModel.load(ModelSettings(name=str(partial)))


def test_asking_for_cuda_without_cuda_is_an_error_not_a_silent_cpu_fallback(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelUnavailable, match="no CUDA device"):
        EmotionModel.load(ModelSettings(name=str(tiny_model_dir), device="cuda"))


def test_random_weight_models_are_marked_and_say_so(tiny_model_dir, tiny_model, caplog):
    assert (tiny_model_dir / "RANDOM_WEIGHTS").exists()
    assert tiny_model.info.random_weights is True
    with caplog.at_level("WARNING"):
        EmotionModel.load(ModelSettings(name=str(tiny_model_dir)))
    assert "RANDOM WEIGHTS" in caplog.text and "MEANINGLESS" in caplog.text


def test_a_biased_random_model_moves_one_logit_by_its_offset_and_every_result_says_so(
    tiny_model, angry_model, angry_model_dir, caplog
):
    samples = speech_clip(3.0)
    pooled = tiny_model.frame_features(samples).mean(axis=0)  # the same seed: the same encoder
    shift = np.log(angry_model.classify(pooled)[0]) - np.log(tiny_model.classify(pooled)[0])
    angry = EMOTION_KEYS.index("angry")

    # Log-probabilities all move by the same normaliser; angry's by exactly its offset more.
    assert np.allclose(shift[angry] - np.delete(shift, angry), 4.0, atol=1e-4)
    result = analyse(encode(samples, 16000, "wav_f32"), angry_model)
    assert result.emotion == "angry" and result.to_dict()["model"]["random_bias"] == {"angry": 4.0}
    assert result.random_weights and "random_bias" not in tiny_model.info.to_dict()
    assert "biased on purpose (angry +4" in (angry_model_dir / "RANDOM_WEIGHTS").read_text(encoding="utf-8")
    with caplog.at_level("WARNING"):
        EmotionModel.load(ModelSettings(name=str(angry_model_dir)))
    assert "MEANINGLESS" in caplog.text and "biased on purpose ({'angry': 4.0})" in caplog.text


def test_tiny_preset_is_well_under_2_mb_and_in_the_published_format(tiny_model_dir):
    assert (tiny_model_dir / "model.pt").stat().st_size < 2_000_000
    for name in ("config.yaml", "model.pt", "tokens.txt", "configuration.json"):
        assert (tiny_model_dir / name).is_file()
    config = yaml.safe_load((tiny_model_dir / "config.yaml").read_text(encoding="utf-8"))
    assert config["model"] == "Emotion2vec"
    assert config["tokenizer"] == "CharTokenizer"


@pytest.mark.parametrize(
    ("preset", "dim", "millions"),
    [("base", 768, (90, 100)), ("large", 1024, (300, 330))],
)
def test_full_size_presets_have_the_published_shapes(preset, dim, millions):
    from funasr.models.emotion2vec.model import Emotion2vec

    config = model_files._config_for(PRESETS[preset])
    with torch.device("meta"):
        network = Emotion2vec(model_conf=config["model_conf"], vocab_size=9)
    parameters = sum(p.numel() for p in network.parameters()) / 1e6

    assert network.proj.in_features == dim
    assert millions[0] <= parameters <= millions[1]


def test_fast_mode_quantises_the_encoder_but_keeps_the_head_exact(tiny_model_dir, tiny_model):
    fast = EmotionModel.load(ModelSettings(name=str(tiny_model_dir), mode="fast"))
    samples = speech_clip(3.0)

    exact_scores = tiny_model.classify(tiny_model.frame_features(samples).mean(axis=0))[0]
    fast_scores = fast.classify(fast.frame_features(samples).mean(axis=0))[0]

    float_linear = {name for name, module in tiny_model._network.named_modules() if type(module) is torch.nn.Linear}
    int8_linear = {name for name, module in fast._network.named_modules()
                   if isinstance(module, torch.ao.nn.quantized.dynamic.Linear)}
    assert len(float_linear) > 10 and int8_linear == float_linear - {"proj"}, "every encoder Linear, not the head"
    assert type(fast._network.proj) is torch.nn.Linear and fast._network.proj.weight.dtype == torch.float32
    assert fast.info.mode == "fast"
    assert np.abs(fast_scores - exact_scores).max() < 0.05
    assert fast_scores.sum() == pytest.approx(1.0)


def test_make_random_writes_a_directory_funasr_loads_with_all_keys(tmp_path):
    directory = make_random_model("tiny", tmp_path / "m", seed=3)
    model = EmotionModel.load(ModelSettings(name=str(directory)))
    assert model.info.embedding_dim == 32
