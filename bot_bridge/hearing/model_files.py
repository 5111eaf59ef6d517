"""Where model weights come from: a hub, a local directory, or random numbers.

``resolve_model_dir`` turns a model setting (``model.name`` for
emotion2vec+, ``transcribe.model`` for SenseVoice) into a directory funasr
can load with no network access. Hub ids are looked up in the hub's local
cache first; only if they are absent is the hub contacted, and only after a
quick reachability probe. funasr left to itself retries for ~20 s without a
network and then blames the model ("not registered"); an operator deserves a
fast, true answer that says how to fix it.

``make_random_model`` writes an emotion2vec+ directory in the exact published
format (``config.yaml``, ``model.pt``, ``tokens.txt``, ``configuration.json``)
with random weights, for tests and benchmarks on machines that cannot
download the real ones (``sensevoice_files.py`` does the same for
SenseVoice). Compute cost does not depend on weight values, so the full-size
presets give true timings; the labels they produce mean nothing, which is why
such directories carry a marker file and every result from them says so.

A random model can also be made to lean towards an emotion on purpose
(``bias``: a logit offset added to the classification head's bias for that
emotion), so that a test can drive an angry-sounding note through the whole
product (webhook, worker, model, escalation, alert). The offsets are written
in the marker, and every result of such a model names them
(``model.random_bias``): a biased random model is still a random model.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from collections.abc import Mapping
from pathlib import Path

from ..emotions import EMOTION_KEYS, emotion_key_for_token
from ..errors import ModelUnavailable
from .funasr_loading import funasr_prints_logged

log = logging.getLogger(__name__)

RANDOM_MARKER = "RANDOM_WEIGHTS"
#: The marker's line that records a head biased on purpose, followed by the offsets as JSON.
BIAS_LINE = "head bias: "


@dataclass(frozen=True)
class ModelKind:
    """One kind of model bot-bridge loads: its files, its hub ids, and the setting that names it."""

    label: str
    required_files: tuple[str, ...]
    hub_ids: dict[str, dict[str, str]]  # hub -> {name people write: the hub's repository id}
    variable: str  # the environment variable of its setting
    setting: str  # its key in config/bot-bridge.yaml
    without_weights: str  # what to do instead, said after the download advice


EMOTION2VEC = ModelKind(
    label="emotion2vec+",
    required_files=("config.yaml", "model.pt", "tokens.txt"),
    hub_ids={
        "ms": {
            "iic/emotion2vec_plus_large": "iic/emotion2vec_plus_large",
            "iic/emotion2vec_plus_base": "iic/emotion2vec_plus_base",
            "iic/emotion2vec_plus_seed": "iic/emotion2vec_plus_seed",
        },
        "hf": {
            "iic/emotion2vec_plus_large": "emotion2vec/emotion2vec_plus_large",
            "iic/emotion2vec_plus_base": "emotion2vec/emotion2vec_plus_base",
            "iic/emotion2vec_plus_seed": "emotion2vec/emotion2vec_plus_seed",
        },
    },
    variable="BOT_BRIDGE_MODEL",
    setting="model.name",
    without_weights="To try bot-bridge without real weights: `make demo` (the service) and `make demo-predict FILES=...` "
    "(the command line), both with random weights: their labels are meaningless.",
)

SENSEVOICE_BPE = "chn_jpn_yue_eng_ko_spectok.bpe.model"
SENSEVOICE = ModelKind(
    label="SenseVoice",
    # configuration.json is required: without it funasr looks for bpe.model and finds no tokenizer.
    required_files=("config.yaml", "model.pt", SENSEVOICE_BPE, "am.mvn", "configuration.json"),
    hub_ids={
        "ms": {"iic/SenseVoiceSmall": "iic/SenseVoiceSmall"},
        "hf": {"iic/SenseVoiceSmall": "FunAudioLLM/SenseVoiceSmall"},
    },
    variable="BOT_BRIDGE_TRANSCRIBE_MODEL",
    setting="transcribe.model",
    without_weights="Without them voice notes still get their emotion, with no transcript "
    "(set transcribe.enabled: false to stop asking).",
)

HUB_HOSTS = {"ms": "www.modelscope.cn", "hf": "huggingface.co"}
HUB_PROBE_TIMEOUT_S = 3.0

TOKENS = "生气/angry 厌恶/disgusted 恐惧/fearful 开心/happy 中立/neutral 其他/other 难过/sad 吃惊/surprised <unk>"


def resolve_model_dir(name: str, hub: str = "ms", kind: ModelKind = EMOTION2VEC) -> Path:
    """The local directory holding the weights for ``name``; download them if reachable."""
    path = Path(name).expanduser()
    if _is_local(name):
        return check_model_dir(path, kind)
    hub_id = _hub_id(name, hub, kind)
    cached = _cached_dir(hub_id, hub, kind)
    if cached is not None:
        return check_model_dir(cached, kind)
    if not _hub_reachable(hub):
        raise ModelUnavailable(_offline_advice(name, hub, kind))
    return check_model_dir(download_model(name, None, hub), kind)


def public_model_name(name: str) -> str:
    """How results and pages name the model ``model.name`` points at: a hub id as it is, a local
    directory by its folder name only. Where the server keeps its files is for its log."""
    return Path(name).expanduser().name if _is_local(name) else name


def _is_local(name: str) -> bool:
    return Path(name).expanduser().is_dir() or name.startswith((".", "/", "~"))


def check_model_dir(path: Path, kind: ModelKind = EMOTION2VEC) -> Path:
    """Refuse a directory that is missing a file funasr needs, naming the file."""
    if not path.is_dir():
        raise ModelUnavailable(f"model directory {path} does not exist")
    missing = [f for f in kind.required_files if not (path / f).is_file()]
    if missing:
        raise ModelUnavailable(
            f"model directory {path} lacks {', '.join(missing)}; a complete {kind.label} "
            f"directory has {', '.join(kind.required_files)}"
            + (" (configuration.json is optional)" if "configuration.json" not in kind.required_files else "")
        )
    return path


def kind_of(name: str) -> ModelKind:
    """The kind of model a hub id names (SenseVoice or emotion2vec+, the default)."""
    for kind in (SENSEVOICE, EMOTION2VEC):
        if any(name in ids or name in ids.values() for ids in kind.hub_ids.values()):
            return kind
    return EMOTION2VEC


def has_random_weights(path: Path) -> bool:
    return (path / RANDOM_MARKER).exists()


def random_bias(path: Path) -> dict[str, float]:
    """The logit offsets a random model's head was given on purpose (``make_random_model(bias=...)``); {} if none."""
    marker = path / RANDOM_MARKER
    if not marker.is_file():
        return {}
    for line in marker.read_text(encoding="utf-8").splitlines():
        if line.startswith(BIAS_LINE):
            return {key: float(value) for key, value in json.loads(line.removeprefix(BIAS_LINE)).items()}
    return {}


def download_model(name: str, target: str | os.PathLike | None, hub: str = "ms") -> Path:
    """Fetch a published model into ``target`` (or the hub's cache when ``None``)."""
    hub_id = _hub_id(name, hub, kind_of(name))
    local_dir = str(target) if target is not None else None
    if hub == "hf":
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=hub_id, local_dir=local_dir))
    from modelscope import snapshot_download

    return Path(snapshot_download(hub_id, local_dir=local_dir))


PRESETS: dict[str, dict] = {
    # A few hundred KB: exercises every layer type of the real architecture in tests.
    "tiny": {
        "embed_dim": 32,
        "depth": 2,
        "num_heads": 2,
        "prenet_depth": 1,
        "conv_channels": 16,
        "conv_pos_groups": 4,
        "decoder_dim": 16,
        "decoder_groups": 4,
        "decoder_layers": 1,
    },
    # emotion2vec_plus_base / plus_seed: funasr's emotion2vec template.yaml.
    "base": {
        "embed_dim": 768,
        "depth": 8,
        "num_heads": 12,
        "prenet_depth": 4,
        "conv_channels": 512,
        "conv_pos_groups": 16,
        "decoder_dim": 384,
        "decoder_groups": 16,
        "decoder_layers": 4,
    },
    # emotion2vec_plus_large: 1024-d, depth 8; 16 heads and prenet 16 give ~315M parameters
    # (the model card says ~300M). Heads and prenet depth are not published.
    "large": {
        "embed_dim": 1024,
        "depth": 8,
        "num_heads": 16,
        "prenet_depth": 16,
        "conv_channels": 512,
        "conv_pos_groups": 16,
        "decoder_dim": 384,
        "decoder_groups": 16,
        "decoder_layers": 4,
    },
}


def make_random_model(
    preset: str, target: str | os.PathLike, seed: int = 0, bias: Mapping[str, float] | None = None
) -> Path:
    """Write a funasr-loadable emotion2vec+ directory with random weights.

    ``bias`` (``{"angry": 3.0}``) adds each offset to the head's bias for that
    emotion, so the model leans towards it whatever it hears; see the module's docstring.
    """
    import torch
    import yaml

    with funasr_prints_logged():
        from funasr.models.emotion2vec.model import Emotion2vec

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    tokens = TOKENS.split()
    bias = {key: float(offset) for key, offset in (bias or {}).items()}
    columns = _bias_columns(bias, tokens)
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    config = _config_for(PRESETS[preset])

    # The marker goes first: an interrupted write must never leave random weights unmarked.
    (target / RANDOM_MARKER).write_text(_marker_text(preset, seed, bias), encoding="utf-8")
    torch.manual_seed(seed)
    model = Emotion2vec(model_conf=config["model_conf"], vocab_size=len(tokens))
    # Trained checkpoints have learned extra tokens; zeros would make every input look alike.
    for name, parameter in model.named_parameters():
        if name.endswith("extra_tokens"):
            torch.nn.init.normal_(parameter, std=0.5)
    with torch.no_grad():
        for key, column in columns.items():
            model.proj.bias[column] += bias[key]
    torch.save(model.state_dict(), target / "model.pt")

    (target / "config.yaml").write_text(
        yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    (target / "tokens.txt").write_text("\n".join(tokens), encoding="utf-8")
    (target / "configuration.json").write_text(
        json.dumps(
            {
                "framework": "pytorch",
                "task": "emotion-recognition",
                "pipeline": {"type": "funasr-pipeline"},
                "model": {"type": "funasr"},
                "file_path_metas": {
                    "init_param": "model.pt",
                    "tokenizer_conf": {"token_list": "tokens.txt"},
                    "config": "config.yaml",
                },
                "model_name_in_hub": {"ms": "", "hf": ""},
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    parameters = sum(p.numel() for p in model.parameters())
    log.warning("wrote RANDOM-WEIGHT model %s (%s, %.1fM parameters%s)", target, preset, parameters / 1e6,
                f", head biased {bias}" if bias else "")
    return target


def _bias_columns(bias: dict[str, float], tokens: list[str]) -> dict[str, int]:
    """The head's output column of each emotion in ``bias``; an unknown name is refused, naming the nine."""
    columns = {emotion_key_for_token(token): column for column, token in enumerate(tokens)}
    unknown = sorted(set(bias) - set(columns))
    if unknown:
        raise ValueError(f"cannot bias {', '.join(unknown)}: not an emotion; choose from {', '.join(EMOTION_KEYS)}")
    return {key: columns[key] for key in bias}


def _marker_text(preset: str, seed: int, bias: dict[str, float]) -> str:
    text = (
        f"RANDOM WEIGHTS (preset {preset!r}, seed {seed}), written by `bot-bridge model make-random`.\n"
        "The architecture and file format are those of emotion2vec+, so speed and memory are real,\n"
        "but every emotion label this model gives is MEANINGLESS.\n"
    )
    if bias:
        offsets = ", ".join(f"{key} {offset:+g}" for key, offset in bias.items())
        text += (
            f"Its head was biased on purpose ({offsets} added to the logits), so that it leans that way\n"
            "whatever it hears: for tests of what happens after the model, never a real judgement.\n"
            f"{BIAS_LINE}{json.dumps(bias)}\n"
        )
    return text


def _config_for(preset: dict) -> dict:
    config = copy.deepcopy(_TEMPLATE)
    model_conf = config["model_conf"]
    model_conf.update(embed_dim=preset["embed_dim"], depth=preset["depth"], num_heads=preset["num_heads"])
    audio = model_conf["modalities"]["audio"]
    channels = preset["conv_channels"]
    audio.update(
        prenet_depth=preset["prenet_depth"],
        num_alibi_heads=preset["num_heads"],
        model_depth=preset["depth"],
        conv_pos_groups=preset["conv_pos_groups"],
        feature_encoder_spec=f"[({channels}, 10, 5)] + [({channels}, 3, 2)] * 4 + [({channels},2,2)] + [({channels},2,2)]",
    )
    audio["decoder"].update(
        decoder_dim=preset["decoder_dim"],
        decoder_groups=preset["decoder_groups"],
        decoder_layers=preset["decoder_layers"],
    )
    return config


def _hub_id(name: str, hub: str, kind: ModelKind) -> str:
    known = kind.hub_ids[hub]
    if name in known:
        return known[name]
    short = f"iic/{name}"
    return known.get(short, name)


def _cached_dir(hub_id: str, hub: str, kind: ModelKind) -> Path | None:
    if hub == "hf":
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(repo_id=hub_id, local_files_only=True))
        except Exception:  # noqa: BLE001 - any failure means "not in the cache"
            return None
    cache = Path(os.environ.get("MODELSCOPE_CACHE", Path.home() / ".cache" / "modelscope" / "hub"))
    for candidate in (cache / "models" / hub_id, cache / hub_id):
        if all((candidate / f).is_file() for f in kind.required_files):
            return candidate
    return None


def _hub_reachable(hub: str) -> bool:
    """Resolve and connect to the hub within a few seconds, whatever DNS does."""
    host = HUB_HOSTS[hub]
    outcome: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, 443), timeout=HUB_PROBE_TIMEOUT_S).close()
            outcome.append(True)
        except OSError:
            outcome.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(HUB_PROBE_TIMEOUT_S + 0.5)
    return bool(outcome and outcome[0])


def _offline_advice(name: str, hub: str, kind: ModelKind) -> str:
    return (
        f"the weights of {name} are not on this machine and {HUB_HOSTS[hub]} cannot be reached. "
        f"Fix: on a machine with internet run `bot-bridge model download {name} ./{name.rsplit('/', 1)[-1]}"
        f"{' --hub hf' if hub == 'hf' else ''}`, copy that directory here and set {kind.variable} "
        f"(or {kind.setting} in config/bot-bridge.yaml) to its path. {kind.without_weights}"
    )


# funasr's emotion2vec template.yaml (the published plus_base config), plus the classification
# head's tokenizer entry; presets above change only the sizes.
_TEMPLATE: dict = {
    "model": "Emotion2vec",
    "model_conf": {
        "loss_beta": 0.0,
        "loss_scale": None,
        "depth": 8,
        "start_drop_path_rate": 0.0,
        "end_drop_path_rate": 0.0,
        "num_heads": 12,
        "norm_eps": 1e-05,
        "norm_affine": True,
        "encoder_dropout": 0.1,
        "post_mlp_drop": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.0,
        "dropout_input": 0.0,
        "layerdrop": 0.05,
        "embed_dim": 768,
        "mlp_ratio": 4.0,
        "layer_norm_first": False,
        "average_top_k_layers": 8,
        "end_of_block_targets": False,
        "clone_batch": 8,
        "layer_norm_target_layer": False,
        "batch_norm_target_layer": False,
        "instance_norm_target_layer": True,
        "instance_norm_targets": False,
        "layer_norm_targets": False,
        "ema_decay": 0.999,
        "ema_same_dtype": True,
        "log_norms": True,
        "ema_end_decay": 0.99999,
        "ema_anneal_end_step": 20000,
        "ema_encoder_only": False,
        "max_update": 100000,
        "extractor_mode": "layer_norm",
        "shared_decoder": None,
        "min_target_var": 0.1,
        "min_pred_var": 0.01,
        "supported_modality": "AUDIO",
        "mae_init": False,
        "seed": 1,
        "skip_ema": False,
        "cls_loss": 1.0,
        "recon_loss": 0.0,
        "d2v_loss": 1.0,
        "decoder_group": False,
        "adversarial_training": False,
        "adversarial_hidden_dim": 128,
        "adversarial_weight": 0.1,
        "cls_type": "chunk",
        "normalize": True,
        "modalities": {
            "audio": {
                "type": "AUDIO",
                "prenet_depth": 4,
                "prenet_layerdrop": 0.05,
                "prenet_dropout": 0.1,
                "start_drop_path_rate": 0.0,
                "end_drop_path_rate": 0.0,
                "num_extra_tokens": 10,
                "init_extra_token_zero": True,
                "mask_noise_std": 0.01,
                "mask_prob_min": None,
                "mask_prob": 0.5,
                "inverse_mask": False,
                "mask_prob_adjust": 0.05,
                "keep_masked_pct": 0.0,
                "mask_length": 5,
                "add_masks": False,
                "remove_masks": False,
                "mask_dropout": 0.0,
                "encoder_zero_mask": True,
                "mask_channel_prob": 0.0,
                "mask_channel_length": 64,
                "ema_local_encoder": False,
                "local_grad_mult": 1.0,
                "use_alibi_encoder": True,
                "alibi_scale": 1.0,
                "learned_alibi": False,
                "alibi_max_pos": None,
                "learned_alibi_scale": True,
                "learned_alibi_scale_per_head": True,
                "learned_alibi_scale_per_layer": False,
                "num_alibi_heads": 12,
                "model_depth": 8,
                "decoder": {
                    "decoder_dim": 384,
                    "decoder_groups": 16,
                    "decoder_kernel": 7,
                    "decoder_layers": 4,
                    "input_dropout": 0.1,
                    "add_positions_masked": False,
                    "add_positions_all": False,
                    "decoder_residual": True,
                    "projection_layers": 1,
                    "projection_ratio": 2.0,
                },
                "extractor_mode": "layer_norm",
                "feature_encoder_spec": "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]",
                "conv_pos_width": 95,
                "conv_pos_groups": 16,
                "conv_pos_depth": 5,
                "conv_pos_pre_ln": False,
            }
        },
    },
    "tokenizer": "CharTokenizer",
    "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
}
