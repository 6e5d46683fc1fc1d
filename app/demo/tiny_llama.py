"""A tiny random-weight Llama with the Orpheus vocabulary, built offline (tests, demo).

The tokenizer mirrors the layout a real Orpheus checkpoint has, so every id the
gateway relies on is where the real model puts it:

- ids 0..255: the 256 byte-level characters (GPT-2 order, no merges), so text
  tokenizes one byte per token — the ids the real vLLM capture of such a model shows;
- ids 256..127999: ``<filler_N>`` placeholders for the rest of Llama-3's vocabulary;
- ids 128000..128255: Llama-3's specials (``<|begin_of_text|>``, ``<|eot_id|>``, reserved);
- ids 128256 + N: ``<custom_token_N>``, marked special, up to the real vocabulary size.

Random weights alone would make the model pick fillers and almost never end a
generation. Hidden channel 0 is therefore turned into a constant "bias" channel
(every embedding carries 1.0 there, the layers neither read nor write it), and the
output head uses it to favour audio tokens and to give ``END_OF_SPEECH`` a
probability that ends an audio-constrained generation after about ``mean_frames``
frames at the usual sampling settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from app.engine.constraints import OrpheusSampler
from app.vocab import (
    AUDIO_TOKEN_BASE,
    AUDIO_TOKEN_END,
    BOS,
    CODEBOOK_SIZE,
    CUSTOM_TOKEN_BASE,
    END_OF_SPEECH,
    EOT,
    PAD,
    START_OF_SPEECH,
)

VOCAB_SIZE = 156940
"""The vocabulary size of canopylabs/orpheus-3b-0.1-ft (covers every audio id)."""

BOS_TEXT = "<|begin_of_text|>"
EOT_TEXT = "<|eot_id|>"
_LLAMA3_SPECIALS = 256
_OTHER_BIAS = -20.0
_HEAD_STD = 0.5
_CALIBRATION_TEMPERATURE = 0.6
_CALIBRATION_TOP_P = 0.9

_MODEL_SHAPE: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 8192,
    "rope_theta": 500000.0,
}


def custom_token(n: int) -> str:
    return f"<custom_token_{n}>"


def _bytes_to_unicode() -> list[str]:
    """GPT-2's byte -> printable character table, in its id order."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = [chr(b) for b in printable]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _llama3_specials() -> list[str]:
    names = [BOS_TEXT, "<|end_of_text|>"]
    names += [f"<|reserved_special_token_{i}|>" for i in range(2)]
    names += ["<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_2|>"]
    names += ["<|eom_id|>", "<|python_tag|>", EOT_TEXT]
    names += [
        f"<|reserved_special_token_{i}|>" for i in range(3, 3 + _LLAMA3_SPECIALS - len(names))
    ]
    return names


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The Orpheus-layout tokenizer (about a second to build)."""
    vocab = {char: i for i, char in enumerate(_bytes_to_unicode())}
    vocab.update({f"<filler_{i}>": i for i in range(len(vocab), BOS)})
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    # Added tokens take the next free ids in order, which lands them on Llama-3's ids.
    specials = _llama3_specials() + [custom_token(n) for n in range(VOCAB_SIZE - CUSTOM_TOKEN_BASE)]
    tokenizer.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    # Like Llama-3, plain tokenization starts with <|begin_of_text|>.
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TEXT} $A",
        pair=f"{BOS_TEXT} $A {BOS_TEXT} $B",
        special_tokens=[(BOS_TEXT, BOS)],
    )
    if tokenizer.token_to_id(EOT_TEXT) != EOT or tokenizer.get_vocab_size() != VOCAB_SIZE:
        raise AssertionError("tokenizer ids drifted from the Orpheus layout")
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        bos_token=BOS_TEXT,
        eos_token=EOT_TEXT,
        pad_token=custom_token(PAD - CUSTOM_TOKEN_BASE),
    )


def build_model(*, seed: int = 0, mean_frames: float = 40.0) -> LlamaForCausalLM:
    """The random-weight model; deterministic per seed, torch's global RNG is left as it was."""
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        bos_token_id=BOS,
        eos_token_id=EOT,
        pad_token_id=PAD,
        tie_word_embeddings=False,
        **_MODEL_SHAPE,
    )
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        model.eval()  # type: ignore[no-untyped-call]
        _install_bias_channel(model)
        head = model.lm_head.weight
        head[:, 1:].normal_(0.0, _HEAD_STD)
        head[END_OF_SPEECH, 1:] = 0.0  # its logit is then the bias alone, in any context
        scale = _bias_channel_scale(model)
        bias = torch.full((VOCAB_SIZE,), _OTHER_BIAS)
        bias[AUDIO_TOKEN_BASE:AUDIO_TOKEN_END] = 0.0
        head[:, 0] = bias / scale
        head[END_OF_SPEECH, 0] = _end_of_speech_bias(model, mean_frames) / scale
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=BOS,
        eos_token_id=END_OF_SPEECH,
        pad_token_id=PAD,
        do_sample=True,
        temperature=_CALIBRATION_TEMPERATURE,
        top_p=_CALIBRATION_TOP_P,
        repetition_penalty=1.1,
    )
    return model


def _install_bias_channel(model: LlamaForCausalLM) -> None:
    model.model.embed_tokens.weight[:, 0] = 1.0
    for layer in model.model.layers:
        layer.input_layernorm.weight[0] = 0.0
        layer.post_attention_layernorm.weight[0] = 0.0
        layer.self_attn.o_proj.weight[0, :] = 0.0
        layer.mlp.down_proj.weight[0, :] = 0.0


def _calibration_ids() -> torch.Tensor:
    prompt = [BOS, *range(70, 90), EOT, START_OF_SPEECH]
    audio = [
        AUDIO_TOKEN_BASE + (i % 7) * CODEBOOK_SIZE + (i * 523) % CODEBOOK_SIZE for i in range(42)
    ]
    return torch.tensor([prompt + audio])


def _bias_channel_scale(model: LlamaForCausalLM) -> float:
    """The value channel 0 has after the final norm (nearly the same at every position)."""
    hidden = model.model(input_ids=_calibration_ids()).last_hidden_state
    return float(hidden[0, :, 0].mean())


def _end_of_speech_bias(model: LlamaForCausalLM, mean_frames: float) -> float:
    """The END_OF_SPEECH logit for which, at a frame boundary and under the usual
    sampling (temperature 0.6, top-p 0.9), END_OF_SPEECH is drawn with probability
    1 / (mean_frames + 1) on average: a stream then lasts about ``mean_frames`` frames."""
    scores = model(input_ids=_calibration_ids()).logits[0].float()
    sampler = OrpheusSampler(
        0,
        stop_token_ids=[END_OF_SPEECH],
        temperature=_CALIBRATION_TEMPERATURE,
        top_p=_CALIBRATION_TOP_P,
        repetition_penalty=1.0,
        seed=0,
    )
    at_boundary = torch.zeros((scores.shape[0], 0), dtype=torch.long)
    target = 1.0 / (max(mean_frames, 0.0) + 1.0)
    low, high = -100.0, 100.0
    for _ in range(40):  # bisection: the stop probability grows with the logit
        bias = (low + high) / 2
        scores[:, END_OF_SPEECH] = bias
        _, logits = sampler.candidates(at_boundary, scores)
        if float(torch.softmax(logits, dim=-1)[:, -1].mean()) < target:
            low = bias
        else:
            high = bias
    return (low + high) / 2


def write_tiny_orpheus_llm(directory: Path, *, seed: int = 0, mean_frames: float = 40.0) -> Path:
    """Write a loadable model + tokenizer folder (``from_pretrained``-ready); returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    build_model(seed=seed, mean_frames=mean_frames).save_pretrained(directory)
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(directory)
    _portable_tokenizer_class(directory / "tokenizer_config.json")
    return directory


def _portable_tokenizer_class(path: Path) -> None:
    """Name the class transformers 4.x also knows (what Orpheus checkpoints ship)."""
    config = json.loads(path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2) + "\n")
