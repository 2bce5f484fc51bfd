"""CTranslate2 Whisper weights -> a transformers ``WhisperForConditionalGeneration`` directory.

No Whisper for torch installs offline, but the packaged CTranslate2 models store plain fp16
weights, so they convert losslessly: CTranslate2 fuses attention q/k/v (and cross-attention
k/v) into one matrix and gives k a zero bias that transformers' k projection does not have.
The model shape is read off the tensors, the token ids off ``tokenizer.json``.

A packaged model converts once into ``<cache>/models/<name>-torch/``: written to a temp
directory and renamed into place under a lock, with a marker naming the source, so an
interrupted conversion is redone and a changed source is noticed.
"""

import hashlib
import json
import logging
import os
import re
import shutil
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from voicebot.errors import ModelNotFoundError, ModelPreparationError
from voicebot.models.cache import locked, model_dir
from voicebot.models.resolve import (
    HUB_ID,
    names_of,
    packaged,
    require_files,
    resolve_asr,
    warn_online,
)

log = logging.getLogger(__name__)

_MARKER = ".complete"
# CTranslate2's DataType enum order (include/ctranslate2/types.h); bfloat16 (5) has no numpy type.
_CT2_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16)
_HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def torch_model_dir(name_or_path: str) -> str:
    """What ``WhisperForConditionalGeneration.from_pretrained`` should load for ``name_or_path``.

    A packaged name or a CTranslate2 directory is converted into the cache (once); a
    transformers directory (config.json, weights and tokenizer.json) is used as it is; a hub
    id is returned unchanged for online use.
    """
    spec = packaged(name_or_path, "asr")
    if spec is not None:
        return str(ensure_converted(Path(resolve_asr(spec.name)), model_dir(f"{spec.name}-torch")))
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if (path / "model.bin").is_file():
            key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
            return str(ensure_converted(path, model_dir(f"torch-{key}")))
        require_files(path, ("config.json", "tokenizer.json"), "a transformers Whisper directory")
        if not any((path / name).is_file() for name in _HF_WEIGHTS):
            raise ModelNotFoundError(f"{path} holds no weights: expected one of {_HF_WEIGHTS}")
        return str(path)
    if HUB_ID.match(name_or_path):
        warn_online("Whisper model", name_or_path)
        return name_or_path
    raise ModelNotFoundError(
        f"unknown Whisper model {name_or_path!r} for torch: use a packaged name "
        f"({names_of('asr')}), a CTranslate2 or transformers model directory, or a hub id "
        "such as openai/whisper-base (online)"
    )


def ensure_converted(source: Path, target: Path) -> Path:
    """Convert the CTranslate2 model in ``source`` into ``target`` unless already done."""
    stamp = _source_stamp(source)
    if _marker(target) == stamp:
        return target
    with locked(target.with_name(f".{target.name}.lock")):
        if _marker(target) == stamp:  # another process converted it while we waited
            return target
        for stale in target.parent.glob(f".{target.name}.tmp-*"):  # left by a crash
            shutil.rmtree(stale, ignore_errors=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        try:
            convert(source, tmp)
            (tmp / _MARKER).write_text(stamp)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except OSError as exc:  # typically a full disk: the user can act on it
            shutil.rmtree(tmp, ignore_errors=True)
            raise ModelPreparationError(f"cannot write {target}: {exc}") from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("converted %s into %s", source, target)
    return target


def convert(source: Path, out: Path) -> None:
    """Write the transformers Whisper directory for the CTranslate2 model in ``source``."""
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    require_files(source, ("model.bin", "config.json", "tokenizer.json"), "a CTranslate2 Whisper")
    ct2 = read_ct2(source / "model.bin")
    vocab = json.loads((source / "tokenizer.json").read_text())["added_tokens"]
    token_ids = {token["content"]: token["id"] for token in vocab}
    ct2_config = json.loads((source / "config.json").read_text())
    config = hf_config(ct2, ct2_config, token_ids)
    state = {name: torch.from_numpy(array) for name, array in hf_state_dict(ct2).items()}
    model = WhisperForConditionalGeneration(config).to(state["proj_out.weight"].dtype)
    model.load_state_dict(state, strict=True)  # names and shapes must all match
    model.generation_config = _generation_config(config, token_ids, ct2_config.get("lang_ids", []))
    out.mkdir(parents=True)
    model.save_pretrained(out)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(out)
    shutil.copyfile(source / "tokenizer.json", out / "tokenizer.json")


def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 ``model.bin`` (format version 6), aliases resolved."""
    with path.open("rb") as f:
        version = _unpack(f, "I")
        if version != 6:
            raise ModelPreparationError(f"{path}: CTranslate2 model format {version}, expected 6")
        _string(f)  # spec name
        _unpack(f, "I")  # spec revision
        variables: dict[str, np.ndarray] = {}
        for _ in range(_unpack(f, "I")):
            name = _string(f)
            rank = _unpack(f, "B")
            shape = struct.unpack(f"{rank}I", f.read(4 * rank))
            type_id = _unpack(f, "B")
            data = f.read(_unpack(f, "I"))
            if type_id >= len(_CT2_DTYPES):
                raise ModelPreparationError(f"{path}: {name} has unsupported type id {type_id}")
            variables[name] = np.frombuffer(data, _CT2_DTYPES[type_id]).reshape(shape).copy()
        for _ in range(_unpack(f, "I")):
            alias, name = _string(f), _string(f)
            variables[alias] = variables[name]
    return variables


def _unpack(f: BinaryIO, fmt: str) -> int:
    return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]


def _string(f: BinaryIO) -> str:
    return f.read(_unpack(f, "H"))[:-1].decode()  # length counts the trailing NUL


def hf_state_dict(ct2: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """transformers parameter names for the CTranslate2 variables, fused projections split."""
    out = {
        "model.encoder.conv1.weight": ct2["encoder/conv1/weight"],
        "model.encoder.conv1.bias": ct2["encoder/conv1/bias"],
        "model.encoder.conv2.weight": ct2["encoder/conv2/weight"],
        "model.encoder.conv2.bias": ct2["encoder/conv2/bias"],
        "model.encoder.embed_positions.weight": ct2["encoder/position_encodings/encodings"],
        "model.decoder.embed_tokens.weight": ct2["decoder/embeddings/weight"],
        "model.decoder.embed_positions.weight": ct2["decoder/position_encodings/encodings"],
        "proj_out.weight": ct2["decoder/projection/weight"],
    }
    for side in ("encoder", "decoder"):
        out |= _norm(ct2, f"{side}/layer_norm", f"model.{side}.layer_norm")
        for i in range(_count_layers(ct2, side)):
            src, dst = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            out |= _norm(ct2, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
            qkv = f"{src}/self_attention/linear_0"
            out |= _split(ct2, qkv, [f"{dst}.self_attn.{p}_proj" for p in "qkv"])
            out |= _linear(ct2, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj")
            out |= _norm(ct2, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
            out |= _linear(ct2, f"{src}/ffn/linear_0", f"{dst}.fc1")
            out |= _linear(ct2, f"{src}/ffn/linear_1", f"{dst}.fc2")
            if side == "decoder":
                cross = f"{dst}.encoder_attn"
                out |= _norm(ct2, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
                out |= _linear(ct2, f"{src}/attention/linear_0", f"{cross}.q_proj")
                kv = f"{src}/attention/linear_1"
                out |= _split(ct2, kv, [f"{cross}.k_proj", f"{cross}.v_proj"])
                out |= _linear(ct2, f"{src}/attention/linear_2", f"{cross}.out_proj")
    return out


def _count_layers(ct2: dict[str, np.ndarray], side: str) -> int:
    return len({name.split("/")[1] for name in ct2 if re.match(rf"{side}/layer_\d+/", name)})


def _norm(ct2: dict[str, np.ndarray], src: str, dst: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": ct2[f"{src}/gamma"], f"{dst}.bias": ct2[f"{src}/beta"]}


def _linear(ct2: dict[str, np.ndarray], src: str, dst: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": ct2[f"{src}/weight"], f"{dst}.bias": ct2[f"{src}/bias"]}


def _split(ct2: dict[str, np.ndarray], src: str, dsts: list[str]) -> dict[str, np.ndarray]:
    """Unfuse a CTranslate2 projection; the k projection's bias must be zero, and is dropped."""
    weights = np.split(ct2[f"{src}/weight"], len(dsts))
    biases = np.split(ct2[f"{src}/bias"], len(dsts))
    out = {}
    for dst, weight, bias in zip(dsts, weights, biases, strict=True):
        out[f"{dst}.weight"] = weight
        if dst.endswith("k_proj"):
            if np.any(bias):
                raise ModelPreparationError(f"{src}: non-zero key bias, cannot convert losslessly")
        else:
            out[f"{dst}.bias"] = bias
    return out


def hf_config(ct2: dict[str, np.ndarray], ct2_config: dict, token_ids: dict[str, int]):
    """A ``WhisperConfig`` for the tensors' shapes and the tokenizer's special tokens."""
    from transformers import WhisperConfig

    eot = token_ids["<|endoftext|>"]
    return WhisperConfig(
        vocab_size=ct2["decoder/embeddings/weight"].shape[0],
        num_mel_bins=ct2["encoder/conv1/weight"].shape[1],
        d_model=ct2["encoder/conv1/weight"].shape[0],
        encoder_layers=_count_layers(ct2, "encoder"),
        decoder_layers=_count_layers(ct2, "decoder"),
        encoder_attention_heads=int(ct2["encoder/num_heads"]),
        decoder_attention_heads=int(ct2["decoder/num_heads"]),
        encoder_ffn_dim=ct2["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=ct2["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=ct2["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=ct2["decoder/position_encodings/encodings"].shape[0],
        decoder_start_token_id=token_ids["<|startoftranscript|>"],
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        suppress_tokens=ct2_config.get("suppress_ids"),
        begin_suppress_tokens=ct2_config.get("suppress_ids_begin"),
        tie_word_embeddings=True,
    )


def _generation_config(config, token_ids: dict[str, int], lang_ids: list[int]):
    """What transformers' own ``generate`` needs, so the directory also works without voicebot."""
    from transformers import GenerationConfig

    names = {i: t for t, i in token_ids.items()}
    languages = {names[i]: i for i in lang_ids}
    multilingual = config.vocab_size >= 51865
    return GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
        suppress_tokens=config.suppress_tokens,
        begin_suppress_tokens=config.begin_suppress_tokens,
        no_timestamps_token_id=token_ids["<|notimestamps|>"],
        max_length=config.max_target_positions,
        is_multilingual=multilingual,
        lang_to_id=languages if multilingual else None,
        task_to_id={task: token_ids[f"<|{task}|>"] for task in ("transcribe", "translate")}
        if multilingual
        else None,
    )


def _source_stamp(source: Path) -> str:
    """Identifies the source weights: a replaced ``model.bin`` makes the conversion stale."""
    weights = source / "model.bin"
    if not weights.is_file():
        raise ModelNotFoundError(f"{source} is not a CTranslate2 Whisper directory: no model.bin")
    stat = weights.stat()
    return f"{weights.resolve()} {stat.st_size} {stat.st_mtime_ns}\n"


def _marker(target: Path) -> str | None:
    try:
        return (target / _MARKER).read_text()
    except OSError:
        return None
