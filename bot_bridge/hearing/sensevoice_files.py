"""Random-weight SenseVoice-Small directories in the published format, for tests and benchmarks.

The real weights (``iic/SenseVoiceSmall``, ~936 MB) cannot be downloaded
everywhere; ``make_random_sensevoice`` writes a directory funasr loads
exactly as it loads the published one: ``config.yaml``, ``model.pt`` (a
plain fp32 state dict), the SentencePiece BPE tokenizer, ``am.mvn`` (feature
shift and scale) and ``configuration.json`` (which file fills which config
key). The ``small`` preset has the published size (~234M parameters), so it
times like the real model; ``tiny`` is a few MB for tests. The words any of
them produce are MEANINGLESS: the directory carries the same marker file as
random emotion2vec+ models, and every transcript from it says so.

The tokenizer is trained here, at build time, on a made-up corpus, so
nothing is downloaded. Its shape is what funasr's SenseVoice code assumes:

* 25,055 pieces, because the CTC head's width is the tokenizer's size and
  funasr hard-codes ids above 24,883 (language ids 24884.., emotions
  25001.., text normalisation 25016/25017);
* every ``<|tag|>`` is one piece at its id (appended after training, so the
  ids are exact: the trainer's own ``user_defined_symbols`` would put them
  at ids 3..173);
* no dummy prefix, or ``"<|zh|>"`` would encode to ``["▁", "<|zh|>"]``.

Ids of the tags funasr names are the published ones; the other tags sit at
free ids, which only matters to training.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
from pathlib import Path

from .model_files import RANDOM_MARKER, SENSEVOICE_BPE

log = logging.getLogger(__name__)

FIRST_TAG_ID = 24884
VOCAB_SIZE = 25055
LFR_DIM = 560  # 80 mel bins x 7 stacked frames

# Published ids (funasr/models/sense_voice/model.py and its datasets); the rest are free slots.
KNOWN_TAG_IDS = {
    "zh": 24884, "en": 24885, "yue": 24888, "ja": 24892, "ko": 24896, "nospeech": 24992,
    "SER": 24991, "Speech": 24993,
    "HAPPY": 25001, "SAD": 25002, "ANGRY": 25003, "NEUTRAL": 25004, "EMO_UNKNOWN": 25009,
    "withitn": 25016, "woitn": 25017,
}
OTHER_TAGS = (  # into the free slots after <|Speech|>, in this order
    "BGM", "Applause", "Laughter", "Cry", "Sneeze", "Breath", "Cough",
    "FEARFUL", "DISGUSTED", "SURPRISED", "Sing", "Speech_Noise", "Event_UNK", "GBG",
)

PRESETS: dict[str, dict] = {
    # A few MB, most of it the 25,055-wide CTC head: every layer type of the real encoder, for tests.
    "tiny": {"output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 2, "tp_blocks": 1},
    # The published SenseVoice-Small: 233,999,167 parameters.
    "small": {"output_size": 512, "attention_heads": 4, "linear_units": 2048, "num_blocks": 50, "tp_blocks": 20},
}


def make_random_sensevoice(preset: str, target: str | os.PathLike, seed: int = 0) -> Path:
    """Write a funasr-loadable SenseVoice-Small directory with random weights."""
    import torch
    import yaml

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    # The marker goes first: an interrupted write must never leave random weights unmarked.
    (target / RANDOM_MARKER).write_text(
        f"RANDOM WEIGHTS (SenseVoice preset {preset!r}, seed {seed}), written by "
        "`bot-bridge model make-random --kind sensevoice`.\n"
        "The architecture and file format are those of SenseVoice-Small, so speed and memory are real,\n"
        "but every transcript, language, emotion and event this model gives is MEANINGLESS.\n",
        encoding="utf-8",
    )
    (target / SENSEVOICE_BPE).write_bytes(train_tokenizer(seed))
    (target / "am.mvn").write_text(_cmvn_text(seed), encoding="utf-8")
    config = sensevoice_config(preset)
    (target / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    (target / "configuration.json").write_text(json.dumps(CONFIGURATION, indent=2), encoding="utf-8")

    torch.manual_seed(seed)
    model = build_network(config)
    torch.save(model.state_dict(), target / "model.pt")
    parameters = sum(p.numel() for p in model.parameters())
    log.warning("wrote RANDOM-WEIGHT SenseVoice %s (%s, %.1fM parameters)", target, preset, parameters / 1e6)
    return target


def build_network(config: dict):
    """The ``SenseVoiceSmall`` network ``config`` describes, as funasr builds it (random weights)."""
    from funasr.models.sense_voice.model import SenseVoiceSmall

    return SenseVoiceSmall(
        specaug=config["specaug"],
        specaug_conf=config["specaug_conf"],
        encoder=config["encoder"],
        encoder_conf=config["encoder_conf"],
        input_size=LFR_DIM,
        vocab_size=VOCAB_SIZE,
        **config["model_conf"],
    )


def sensevoice_config(preset: str) -> dict:
    """The published config.yaml's inference part, with the encoder sizes of ``preset``.

    The published file also holds training-only blocks (dataset, optimiser,
    scheduler) that inference never reads; they are left out.
    """
    return {
        "encoder": "SenseVoiceEncoderSmall",
        "encoder_conf": {
            **PRESETS[preset],
            "dropout_rate": 0.1,
            "positional_dropout_rate": 0.1,
            "attention_dropout_rate": 0.1,
            "kernel_size": 11,
            "sanm_shfit": 0,
            "selfattention_layer_type": "sanm",
            "normalize_before": True,
        },
        "model": "SenseVoiceSmall",
        "model_conf": {"length_normalized_loss": True, "sos": 1, "eos": 2, "ignore_id": -1},
        "tokenizer": "SentencepiecesTokenizer",
        "tokenizer_conf": {"bpemodel": None, "unk_symbol": "<unk>", "split_with_space": True},
        "frontend": "WavFrontend",
        "frontend_conf": {
            "fs": 16000, "window": "hamming", "n_mels": 80, "frame_length": 25, "frame_shift": 10,
            "lfr_m": 7, "lfr_n": 6, "cmvn_file": None,
        },
        "specaug": "SpecAugLFR",
        "specaug_conf": {
            "apply_time_warp": False, "time_warp_window": 5, "time_warp_mode": "bicubic",
            "apply_freq_mask": True, "freq_mask_width_range": [0, 30], "lfr_rate": 6, "num_freq_mask": 1,
            "apply_time_mask": True, "time_mask_width_range": [0, 12], "num_time_mask": 1,
        },
    }


# The published configuration.json: which file fills which config key.
CONFIGURATION = {
    "framework": "pytorch",
    "task": "auto-speech-recognition",
    "model": {"type": "funasr"},
    "pipeline": {"type": "funasr-pipeline"},
    "model_name_in_hub": {"ms": "", "hf": ""},
    "file_path_metas": {
        "init_param": "model.pt",
        "config": "config.yaml",
        "tokenizer_conf": {"bpemodel": SENSEVOICE_BPE},
        "frontend_conf": {"cmvn_file": "am.mvn"},
    },
}


def train_tokenizer(seed: int = 0) -> bytes:
    """A serialised SentencePiece BPE model of 25,055 pieces, the tags at their ids (well under a second)."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    trained = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus(seed)),
        model_writer=trained,
        model_type="bpe",
        vocab_size=FIRST_TAG_ID,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        add_dummy_prefix=False,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(trained.getvalue())
    if len(model.pieces) != FIRST_TAG_ID:
        raise RuntimeError(f"the BPE trainer gave {len(model.pieces)} pieces, not {FIRST_TAG_ID}")
    for tag in _tags_by_id():
        model.pieces.add(piece=tag, score=0.0, type=sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED)
    return model.SerializeToString()


def _tags_by_id() -> list[str]:
    """The 171 pieces from id 24884 on: known tags at their ids, the others in free slots, placeholders between."""
    slots: list[str | None] = [None] * (VOCAB_SIZE - FIRST_TAG_ID)
    for name, token_id in KNOWN_TAG_IDS.items():
        slots[token_id - FIRST_TAG_ID] = name
    free = iter(i for i, name in enumerate(slots) if name is None and i >= KNOWN_TAG_IDS["Speech"] - FIRST_TAG_ID)
    for name in OTHER_TAGS:
        slots[next(free)] = name
    return [f"<|{name}|>" if name else f"<|SPECIAL_TOKEN_{i}|>" for i, name in enumerate(slots)]


def _corpus(seed: int) -> list[str]:
    """Every common CJK ideograph, hangul syllables, kana and made-up Latin words, in shuffled lines."""
    rng = random.Random(seed)
    characters = [chr(c) for c in range(0x4E00, 0x9FA6)]  # 20,902 CJK unified ideographs
    characters += [chr(0xAC00 + i) for i in range(2500)]  # hangul
    characters += [chr(c) for c in (*range(0x3041, 0x3097), *range(0x30A1, 0x30FB))]  # hiragana, katakana
    rng.shuffle(characters)
    lines = ["".join(characters[i : i + 40]) for i in range(0, len(characters), 40)]
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(3000)]
    lines += [" ".join(words[i : i + 10]) for i in range(0, len(words), 10)]
    return lines


def _cmvn_text(seed: int) -> str:
    """``am.mvn`` in Kaldi's nnet text form: shift = -mean, scale = 1/std of the LFR features.

    The statistics are those of seeded noise with a speech-like loudness
    envelope (the published ones come from real speech, which is not here).
    """
    import numpy as np
    import torch
    from funasr.frontends.wav_frontend import WavFrontend

    rng = np.random.default_rng(seed)
    seconds = 10
    envelope = np.repeat(rng.uniform(0.005, 0.2, seconds * 4), 16000 // 4)
    noise = (rng.standard_normal(seconds * 16000) * envelope).astype(np.float32)
    frontend = WavFrontend(fs=16000, window="hamming", n_mels=80, frame_length=25, frame_shift=10,
                           lfr_m=7, lfr_n=6, dither=0.0)
    features, _ = frontend(torch.from_numpy(noise)[None], [noise.size])
    mean = features[0].mean(dim=0).numpy()
    std = features[0].std(dim=0).clamp_min(1e-3).numpy()

    def values(vector) -> str:
        return " ".join(f"{v:.6f}" for v in vector)

    return "\n".join([
        "<Nnet>",
        f"<Splice> {LFR_DIM} {LFR_DIM}",
        "[ 0 ]",
        f"<AddShift> {LFR_DIM} {LFR_DIM}",
        f"<LearnRateCoef> 0 [ {values(-mean)} ]",
        f"<Rescale> {LFR_DIM} {LFR_DIM}",
        f"<LearnRateCoef> 0 [ {values(1.0 / std)} ]",
        "</Nnet>",
        "",
    ])
