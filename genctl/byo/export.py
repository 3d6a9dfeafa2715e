"""Bring your own model: ``genctl.export_model(module, out=..., conditions=[...], loop=...)``.

The module is checked against the declared loop shape and conditions (one-line errors naming the
argument), saved as a checkpoint of the ``custom`` family (safetensors weights + the factory's
import path and JSON kwargs, never pickle) and exported by the ordinary exporter: ONNX, graph
parity, loop parity, atomic bundle. The torch reference backend rebuilds the module by calling
``factory(**kwargs)`` and loading the weights, so the factory must be importable wherever the
bundle runs on ``--backend torch`` (the ONNX backends need only the bundle).

A ``genctl.Text`` condition adds the encode stage: the bundle gets the sentence encoder as graph
``encoder`` (``input_ids, attention_mask -> states, pooled``) and ``source/tokenizer.json``. The
encoder is the shipped all-MiniLM-L6-v2 (``text_encoder=None``) or the user's own
(``text_encoder=`` + ``tokenizer=``): a BERT ``SentenceEncoder`` is stored as its JSON config, any
other module through an importable factory (``text_encoder_factory``, default its class, +
``text_encoder_kwargs``), exactly like the model. Its weights go into the same checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from genctl.byo.loops import Diffusion, Loop, NextToken, OneShot, Recurrent, decl_json
from genctl.byo.signature import _describe, check_forward, trial_call
from genctl.conditions import Categorical, Condition, ConditionKind, ConditionSchema, Continuous, Text, Vector
from genctl.errors import GenctlError


def export_model(module: nn.Module, out: str | Path, *, loop: Loop, conditions: Sequence[Condition] = (),
                 factory: str | None = None, kwargs: dict[str, Any] | None = None, evaluate_on: str | None = None,
                 overwrite: bool = False, text_encoder: nn.Module | None = None, tokenizer: str | Path | None = None,
                 text_encoder_factory: str | None = None, text_encoder_kwargs: dict[str, Any] | None = None,
                 verbose: bool = False):
    """Export a user's conditional model to a bundle every genctl command accepts; returns the Bundle.

    ``loop``: ``OneShot(noise_shape=...)``, ``Diffusion(sample_shape=..., null=...)``,
    ``NextToken(vocab=..., context=...)`` or ``Recurrent(vocab=..., context=..., state=...)``.
    ``conditions``: ``Categorical(name, names)``, ``Continuous(name, low, high)``, ``Vector(name, dim)``,
    ``Text(name, dim, max_tokens, feed="pooled"|"states")``, passed to ``forward`` in this order after
    the loop's own arguments (a text condition: the pooled (B, dim), or its states and mask).
    ``factory``: ``"module:attr"`` that rebuilds the module with ``**kwargs`` (default: the module's
    class with ``kwargs``). ``evaluate_on``: a shipped dataset whose evaluator fits (``"mnist"``).
    ``text_encoder``: for text conditions, ``None`` (the shipped all-MiniLM-L6-v2 and its tokenizer)
    or a module ``forward(input_ids, attention_mask) -> (states (B, L, D), pooled (B, D))`` with
    ``tokenizer`` the path of its ``tokenizer.json``; a module other than a BERT ``SentenceEncoder``
    is rebuilt by ``text_encoder_factory(**text_encoder_kwargs)`` (default: its class).
    ``verbose``: let the exporter's log and warnings through for this call (as the CLI's ``--verbose``);
    otherwise an export failure is one line naming its first real cause and nothing else is printed.
    """
    from genctl.logs import verbose_for

    with verbose_for(verbose):
        return _export_model(module, out, loop=loop, conditions=conditions, factory=factory, kwargs=kwargs,
                             evaluate_on=evaluate_on, overwrite=overwrite,
                             text=TextEncoderArgs(text_encoder, tokenizer, text_encoder_factory, text_encoder_kwargs))


def _export_model(module: nn.Module, out: str | Path, *, loop: Loop, conditions: Sequence[Condition], factory: str | None,
                  kwargs: dict[str, Any] | None, evaluate_on: str | None, overwrite: bool, text: TextEncoderArgs):
    from genctl.checkpoint import write_checkpoint_files
    from genctl.export import export_bundle
    from genctl.families.custom import WithTextEncoder

    config, encoder = byo_config(module, loop=loop, conditions=conditions, factory=factory, kwargs=kwargs,
                                 evaluate_on=evaluate_on, text=text, with_encoder=True)
    module.eval()
    stored = module if encoder is None else WithTextEncoder(module, encoder)
    with tempfile.TemporaryDirectory(prefix="genctl-byo-") as tmp:
        write_checkpoint_files(Path(tmp), stored, config)
        return export_bundle(tmp, out, overwrite=overwrite)


class TextEncoderArgs:
    """``export_model``'s text-encoder arguments, passed on together."""

    def __init__(self, module: nn.Module | None = None, tokenizer: str | Path | None = None, factory: str | None = None,
                 kwargs: dict | None = None):
        self.module, self.tokenizer, self.factory, self.kwargs = module, tokenizer, factory, kwargs

    def given(self) -> list[str]:
        names = ("text_encoder", "tokenizer", "text_encoder_factory", "text_encoder_kwargs")
        return [n for n, v in zip(names, (self.module, self.tokenizer, self.factory, self.kwargs)) if v is not None]


def byo_config(module: nn.Module, *, loop: Loop, conditions: Sequence[Condition], factory: str | None,
               kwargs: dict | None, evaluate_on: str | None, text: TextEncoderArgs | None = None,
               with_encoder: bool = False):
    """Check everything genctl can check before exporting and return the checkpoint config
    (``with_encoder``: ``(config, text encoder module or None)``)."""
    if not isinstance(module, nn.Module):
        raise GenctlError("export_model module", got=type(module).__name__, expected="a torch.nn.Module")
    if not isinstance(loop, (OneShot, Diffusion, NextToken, Recurrent)):
        raise GenctlError("export_model loop", got=type(loop).__name__,
                          expected="genctl.byo.OneShot, Diffusion, NextToken or Recurrent")
    loop.check()
    schema = _schema(conditions)
    evaluated = _check_evaluate_on(evaluate_on, schema)
    if isinstance(loop, Diffusion):
        _check_nulls(loop.null, schema)
    encoder, text_section = text_encoder_section(schema, text or TextEncoderArgs(), loop)
    names = check_forward(module, loop, schema)
    output_shape = trial_call(module, loop, schema, names)
    kwargs = _json_kwargs(kwargs)
    factory = factory or _class_path(module)
    byo = {"factory": factory, "kwargs": kwargs, "loop": loop.kind, "conditions": schema.to_json(),
           "decl": decl_json(loop), "names": names, "output_shape": output_shape}
    _check_rebuild(module, factory, kwargs)
    if text_section:
        byo["text_encoder"] = text_section
    dataset = {"name": evaluate_on or "custom", "label_names": _label_names(schema), **evaluated}
    if output_shape and len(output_shape) == 3:
        dataset["shape"] = output_shape
    config = {"family": "custom", "dataset": dataset, "hparams": {}, "byo": byo, "train": {}}
    return (config, encoder) if with_encoder else config


# ------------------------------------------------------------------------------------ text encoder

SHIPPED = "all-MiniLM-L6-v2"
LOOP_GRAPHS = {"oneshot": "sample", "diffusion": "step", "autoregressive": "next", "recurrent": "step"}


def text_encoder_section(schema: ConditionSchema, text: TextEncoderArgs, loop: Loop) -> tuple[nn.Module | None, dict | None]:
    """For text conditions: the encoder module and the config section that rebuilds it (``(None, None)`` without)."""
    texts = [c for c in schema.conditions if c.kind == "text"]
    if not texts:
        if text.given():
            raise GenctlError(f"export_model {text.given()[0]}", got="a text encoder argument but no genctl.Text condition",
                              expected="text_encoder/tokenizer only with a text condition: conditions=[genctl.Text(name, ...)]")
        return None, None
    graph = _check_text_conditions(texts, loop)
    max_tokens = max(int(c.max_tokens) for c in texts)
    if text.module is None:
        from genctl.families.text_encoder import load_minilm, minilm_tokenizer_file

        if text.tokenizer is not None or text.factory is not None or text.kwargs is not None:
            raise GenctlError(f"export_model {text.given()[0]}", got="given without text_encoder",
                              expected=f"text_encoder=None (the shipped {SHIPPED} and its own tokenizer), "
                                       "or your encoder as text_encoder= with its tokenizer=")
        encoder, tok_path, name = load_minilm(), minilm_tokenizer_file(), SHIPPED
    else:
        if not isinstance(text.module, nn.Module):
            raise GenctlError("export_model text_encoder", got=type(text.module).__name__,
                              expected="a torch.nn.Module forward(input_ids, attention_mask) -> (states, pooled), or None")
        if text.tokenizer is None:
            raise GenctlError("export_model tokenizer", got="None with a text_encoder of your own",
                              expected="the path of the tokenizer.json your encoder reads (Hugging Face tokenizers format)")
        encoder, tok_path, name = text.module.eval(), Path(text.tokenizer), type(text.module).__name__
    tok_data, tok_record = _tokenizer_record(tok_path)
    from genctl.text_tokens import PromptTokenizer

    try:
        tok = PromptTokenizer.from_str(tok_data.decode("utf-8"), max_tokens)
    except GenctlError:
        raise
    except Exception as exc:  # the tokenizers library raises its own Exception type for a bad file
        raise GenctlError(f"export_model tokenizer '{tok_path}'", got=str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__,
                          expected="a tokenizer.json (Hugging Face tokenizers format)") from None
    section = {"name": name, "graph": graph, "max_tokens": max_tokens, "tokenizer": tok_record,
               "vocab_size": tok.vocab_size, **_encoder_record(encoder, text, tok.vocab_size)}
    section["dim"] = _trial_encode(encoder, tok, texts, max_tokens)
    for c in texts:
        if int(c.dim) != section["dim"]:
            raise GenctlError(f"Condition '{c.name}' dim", got=c.dim, expected=f"the text encoder's output size {section['dim']} ({name})",
                              fix=f"declare genctl.Text('{c.name}', dim={section['dim']}, ...)")
    ids, mask, _ = tok.encode([texts[0].example(), "a"])  # one row padded: the encoder graph traces the masked case
    empty, _, _ = tok.encode([""])
    section["example"] = {"input_ids": ids.tolist(), "attention_mask": mask.tolist()}
    section["empty"] = {"input_ids": empty[0].tolist(), "pad_id": tok.pad_id}
    return encoder, section


def _check_text_conditions(texts: list, loop: Loop) -> str:
    """One encoder graph for all text conditions (the one text_encoder), its tokenizer where export puts it."""
    graphs = sorted({c.encoder for c in texts})
    if len(graphs) > 1:
        raise GenctlError("export_model conditions", got=f"text conditions reading encoder graphs {graphs}",
                          expected="one encoder graph name for every text condition (they share the one text_encoder)")
    if graphs[0] == LOOP_GRAPHS[loop.kind] or not graphs[0].isidentifier():
        raise GenctlError(f"Condition '{texts[0].name}' encoder", got=repr(graphs[0]),
                          expected=f"a graph name other than the loop's '{LOOP_GRAPHS[loop.kind]}' (default 'encoder')")
    for c in texts:
        if c.tokenizer != "source/tokenizer.json":
            raise GenctlError(f"Condition '{c.name}' tokenizer", got=repr(c.tokenizer),
                              expected="'source/tokenizer.json' (where export_model puts the tokenizer; pass the file as tokenizer=)")
    return graphs[0]


def _tokenizer_record(path: Path) -> tuple[bytes, dict]:
    """The tokenizer's bytes and how the config keeps them: the shipped MiniLM file by hash, any other as its JSON text."""
    from genctl.families.text_encoder import minilm_tokenizer_file

    try:
        data = Path(path).read_bytes()
        text = data.decode("utf-8")
        json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise GenctlError(f"export_model tokenizer '{path}'", got=f"an unreadable file ({type(exc).__name__})",
                          expected="a tokenizer.json (Hugging Face tokenizers format)") from None
    sha = hashlib.sha256(data).hexdigest()
    try:
        shipped = minilm_tokenizer_file().read_bytes()
    except (GenctlError, OSError):
        shipped = None
    return data, ({"shipped": SHIPPED, "sha256": sha} if data == shipped else {"json": text, "sha256": sha})


def _encoder_record(encoder: nn.Module, text: TextEncoderArgs, vocab: int) -> dict:
    """How the torch reference rebuilds the encoder: a BERT SentenceEncoder by its config, anything else by factory."""
    from genctl.families.text_encoder import SentenceEncoder, encoder_config

    bert = type(encoder) is SentenceEncoder and type(encoder.bert).__name__ == "BertModel" and text.factory is None
    if bert:
        if text.kwargs is not None:
            raise GenctlError("export_model text_encoder_kwargs", got="kwargs for a SentenceEncoder",
                              expected="None (a BERT SentenceEncoder is stored as its config)")
        if vocab > encoder.vocab_size:
            raise GenctlError("export_model tokenizer", got=f"a vocabulary of {vocab} tokens",
                              expected=f"at most the text encoder's {encoder.vocab_size} token embeddings")
        return {"kind": "bert", "config": encoder_config(encoder)}
    kwargs = _json_kwargs(text.kwargs, "export_model text_encoder_kwargs")
    factory = text.factory or _class_path(encoder, "text_encoder_factory")
    _check_rebuild(encoder, factory, kwargs, what="Text encoder factory", kwargs_arg="text_encoder_kwargs")
    return {"kind": "factory", "factory": factory, "kwargs": kwargs}


@torch.inference_mode()
def _trial_encode(encoder: nn.Module, tok, texts: list, max_tokens: int) -> int:
    """Run the encoder once on tokenized example prompts (and the empty one); returns its output size D."""
    ids, mask, _ = tok.encode([texts[0].example(), ""], fixed=True)
    args = (torch.from_numpy(ids), torch.from_numpy(mask))
    where = f"{type(encoder).__name__}.forward"
    try:
        out = encoder(*args)
    except Exception as exc:
        raise GenctlError(f"Trial call of text_encoder {where}(input_ids: int64 {tuple(ids.shape)}, attention_mask: int64 {tuple(mask.shape)})",
                          got=f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}",
                          expected="a text encoder that accepts its tokenizer's ids") from None
    ok = isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, torch.Tensor) and t.dtype == torch.float32 for t in out)
    if ok:
        states, pooled = out
        ok = states.dim() == 3 and pooled.dim() == 2 and tuple(states.shape[:2]) == tuple(ids.shape) \
            and pooled.shape[0] == ids.shape[0] and states.shape[2] == pooled.shape[1]
    if not ok:
        raise GenctlError(f"Output of text_encoder {where}", got=_describe(out),
                          expected=f"(states float32 ({ids.shape[0]}, {max_tokens}, D), pooled float32 ({ids.shape[0]}, D))")
    return int(pooled.shape[1])


def _schema(conditions: Sequence[Condition]) -> ConditionSchema:
    conds = list(conditions)
    for c in conds:
        if not isinstance(c, ConditionKind):
            raise GenctlError("export_model conditions", got=type(c).__name__,
                              expected="condition declarations: genctl.Categorical, genctl.Continuous, genctl.Vector or genctl.Text")
    seen = [c.name for c in conds]
    if len(set(seen)) != len(seen) or not all(n.isidentifier() for n in seen):
        raise GenctlError("export_model conditions", got=f"names {seen}", expected="distinct identifier names")
    return ConditionSchema(conds)


def _label_names(schema: ConditionSchema) -> list[str]:
    first = next((c for c in schema.conditions if c.classes), None)
    return list(first.classes) if first else []


def _check_nulls(nulls: dict, schema: ConditionSchema) -> None:
    """Null (unconditional) values: known condition names; an int class index, a number, or ``dim`` numbers."""
    for name, value in nulls.items():
        cond = schema.by_name.get(name)
        if cond is None:
            raise GenctlError(f"Diffusion null '{name}'", got="no such condition", expected=f"one of {list(schema.by_name)}")
        try:
            cond.check_null(value)
        except GenctlError as exc:
            raise GenctlError(f"Diffusion null '{name}'", got=repr(value), expected=exc.expected) from None


def _check_evaluate_on(name: str | None, schema: ConditionSchema) -> dict:
    """A shipped dataset, or the user's labelled data (a path: its name, path and content hash are
    recorded, so eval and the build gate find it as for ``genctl train --dataset PATH``)."""
    if name is None:
        return {}
    from genctl.data import DATASETS, get_dataset
    from genctl.data.user import is_user_dataset

    if name not in DATASETS and not is_user_dataset(str(name)):
        raise GenctlError("export_model evaluate_on", got=repr(name),
                          expected=f"one of {sorted(DATASETS)}, a path to your labelled data, or None")
    ds = get_dataset(str(name))
    labels = list(ds.label_names)
    first = schema.conditions[0] if schema.conditions else None
    if first is None or list(first.classes) != labels:
        raise GenctlError(f"export_model evaluate_on='{name}'", got=f"first condition {first.describe() if first else 'none'}",
                          expected=f"a first Categorical condition with the dataset's labels {labels}")
    return {"name": ds.name, "path": ds.source, "content_hash": ds.content_hash} if getattr(ds, "source", None) else {}


def _json_kwargs(kwargs: dict | None, what: str = "export_model kwargs") -> dict:
    try:
        return json.loads(json.dumps(kwargs or {}))
    except TypeError as exc:
        raise GenctlError(what, got=str(exc), expected="JSON values (numbers, strings, lists, dicts)") from None


def _class_path(module: nn.Module, factory_arg: str = "factory") -> str:
    cls = type(module)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        what = "Model" if factory_arg == "factory" else "Text encoder"
        raise GenctlError(f"{what} class '{cls.__qualname__}'", got=f"defined in {cls.__module__} (not importable)",
                          expected="a class or factory in an importable module",
                          fix=f"move the {what.lower()} into a .py module and pass {factory_arg}='module:attr'")
    return f"{cls.__module__}:{cls.__qualname__}"


def _check_rebuild(module: nn.Module, factory: str, kwargs: dict, what: str = "Model factory", kwargs_arg: str = "kwargs") -> None:
    """``factory(**kwargs)`` must rebuild a module that takes these weights, or the torch backend cannot run."""
    from genctl.families.custom import import_factory

    try:
        rebuilt = import_factory(factory)(**kwargs)
        rebuilt.load_state_dict(module.state_dict(), strict=True)
    except GenctlError:
        raise
    except Exception as exc:
        raise GenctlError(f"{what} '{factory}' with kwargs {kwargs}", got=f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}",
                          expected="a module with the same parameters as the one exported",
                          fix=f"pass the constructor arguments as {kwargs_arg}={{...}}") from None


__all__ = ["Categorical", "Continuous", "Diffusion", "NextToken", "OneShot", "Recurrent", "Text", "Vector", "export_model"]
