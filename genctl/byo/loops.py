"""Loop declarations for ``genctl.export_model``: what genctl needs beyond the module itself.

One dataclass per loop shape; each names the ``forward`` arguments it feeds (before the
conditions) so a signature that does not fit is refused with the argument's name.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from genctl.errors import GenctlError
from genctl.schedule import SCHEDULES
from genctl.vocab import model_vocab


@dataclass(kw_only=True)
class OneShot:
    """``sample = forward(noise, *conditions)``; ``noise_shape`` is one sample's noise (no batch axis)."""

    noise_shape: tuple[int, ...]
    output: str = "sample"  # name of the graph output
    kind: ClassVar[str] = "oneshot"
    leading: ClassVar[tuple[str, ...]] = ("noise",)

    def check(self) -> None:
        _positive_shape("OneShot noise_shape", self.noise_shape)


@dataclass(kw_only=True)
class Diffusion:
    """An eps- or v-predicting denoiser ``forward(x_t, t, *conditions)`` inside genctl's fused CFG/DDIM step.

    ``null``: the unconditional value of each guided condition (e.g. ``{"digit": 10}`` for a null
    class, zeros for a vector); a condition left out keeps its value in the unconditional half, and
    with no null at all guidance is fixed at 1. ``t_dtype="float32"`` feeds
    ``t * t_scale`` as a float (``t_scale=1/timesteps`` for models trained on t in [0, 1)).
    """

    sample_shape: tuple[int, ...]
    timesteps: int = 1000
    schedule: str = "linear"  # "linear" (DDPM) or "cosine"
    prediction: str = "epsilon"  # or "v"
    t_dtype: str = "int64"  # or "float32"
    t_scale: float = 1.0
    null: dict[str, Any] = field(default_factory=dict)
    steps: int = 50  # manifest defaults for generate
    guidance_scale: float = 3.0
    kind: ClassVar[str] = "diffusion"
    leading: ClassVar[tuple[str, ...]] = ("x_t", "t")

    def check(self) -> None:
        _positive_shape("Diffusion sample_shape", self.sample_shape)
        for what, value, allowed in (("schedule", self.schedule, SCHEDULES), ("prediction", self.prediction, ("epsilon", "v")),
                                     ("t_dtype", self.t_dtype, ("int64", "float32"))):
            if value not in allowed:
                raise GenctlError(f"Diffusion {what}", got=repr(value), expected=f"one of {list(allowed)}")
        if not isinstance(self.timesteps, int) or self.timesteps < 2:
            raise GenctlError("Diffusion timesteps", got=self.timesteps, expected="an integer >= 2")


@dataclass(kw_only=True)
class NextToken:
    """``logits = forward(tokens, *conditions)``, tokens (B, T) int64, logits (B, V) or (B, T, V); no cache.

    ``vocab``: the characters; token ids are 0 pad, 1 bos, 2 eos, then 3 + the character's index,
    so V = 3 + len(vocab). Or the model's own vocabulary: a list of every token (any strings) with
    its special ids, ``vocab=["<s>", "</s>", "<pad>", "a", ...], bos=0, eos=1, pad=2`` (V = len(vocab);
    ``pad`` may be left out: EOS pads). ``context``: the longest sequence the model takes (BOS included).
    """

    vocab: str | list[str]
    context: int
    bos: int | None = None
    eos: int | None = None
    pad: int | None = None
    kind: ClassVar[str] = "autoregressive"
    leading: ClassVar[tuple[str, ...]] = ("tokens",)

    def check(self) -> None:
        _check_text(self)

    def tokens(self) -> tuple[list[str], dict[str, int]]:
        """The whole vocabulary (specials included) and the special ids (``genctl.vocab.model_vocab``)."""
        return model_vocab(self.vocab, self.bos, self.eos, self.pad)


@dataclass(kw_only=True)
class Recurrent:
    """``logits, state = forward(token, state, *conditions)``, token (B,) int64, state from zeros.

    ``state``: a shape with ``"batch"`` for a single tensor (``("batch", 64)``), or a dict
    ``{name: shape}`` when ``state`` is a tuple in that order (LSTM ``(h, c)``). ``vocab`` (+ ``bos``,
    ``eos``, ``pad``) as for ``NextToken``.
    """

    vocab: str | list[str]
    context: int
    state: Any
    bos: int | None = None  # the model's own special ids, as for NextToken
    eos: int | None = None
    pad: int | None = None
    kind: ClassVar[str] = "recurrent"
    leading: ClassVar[tuple[str, ...]] = ("token", "state")

    def check(self) -> None:
        _check_text(self)
        for name, shape in self.states().items():
            if list(shape).count("batch") != 1 or not all(isinstance(d, int) and d > 0 or d == "batch" for d in shape):
                raise GenctlError(f"Recurrent state '{name}'", got=repr(shape),
                                  expected="a shape of positive ints with exactly one \"batch\" axis, e.g. (\"batch\", 64)")

    def tokens(self) -> tuple[list[str], dict[str, int]]:
        return model_vocab(self.vocab, self.bos, self.eos, self.pad)

    def states(self) -> dict[str, list]:
        if isinstance(self.state, dict):
            return {str(k): list(v) for k, v in self.state.items()}
        return {"state": list(self.state)}


Loop = OneShot | Diffusion | NextToken | Recurrent


def decl_json(loop: Loop) -> dict:
    """The JSON the custom family reads back (``config["byo"]["decl"]``)."""
    data = asdict(loop)
    if isinstance(loop, Recurrent):
        data["state"], data["state_is_tuple"] = loop.states(), isinstance(loop.state, dict)
    if isinstance(loop, (NextToken, Recurrent)):
        data["vocab"] = list(loop.vocab)
        for key in ("bos", "eos", "pad"):  # genctl's ids: no keys, so such bundles read as before
            if data[key] is None:
                del data[key]
    for key in ("noise_shape", "sample_shape"):
        if key in data:
            data[key] = [int(d) for d in data[key]]
    return data


def _positive_shape(what: str, shape) -> None:
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise GenctlError(what, got=repr(shape), expected="a tuple of positive ints (one sample, no batch axis)")


def _check_text(loop) -> None:
    what = type(loop).__name__
    chars = list(loop.vocab)
    own = (loop.bos, loop.eos, loop.pad) != (None, None, None)
    if own:  # the model's own vocabulary and special ids
        if isinstance(loop.vocab, str) or not chars or not all(isinstance(t, str) for t in chars) or len(set(chars)) != len(chars):
            raise GenctlError(f"{what} vocab", got=repr(loop.vocab)[:60],
                              expected="a list of distinct token strings, the special tokens included (with bos/eos/pad ids)")
        for key in ("bos", "eos") + (("pad",) if loop.pad is not None else ()):
            value = getattr(loop, key)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(chars):
                raise GenctlError(f"{what} {key}", got=repr(value),
                                  expected=f"a token id in 0..{len(chars) - 1} (the index of the {key} token in vocab)")
        if loop.bos == loop.eos or loop.pad == loop.bos:
            raise GenctlError(f"{what} special ids", got=f"bos={loop.bos} eos={loop.eos} pad={loop.pad}",
                              expected="bos distinct from eos and pad (pad may equal eos)")
        if len(chars) - len({loop.bos, loop.eos, loop.pad} - {None}) < 1:
            raise GenctlError(f"{what} vocab", got=f"{len(chars)} tokens, all special", expected="at least one ordinary token")
    elif not chars or any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
        raise GenctlError(f"{what} vocab", got=repr(loop.vocab)[:60], expected="distinct single characters",
                          fix="or declare the model's own vocabulary with its special ids: vocab=[...], bos=..., eos=..., pad=...")
    if not isinstance(loop.context, int) or loop.context < 2:
        raise GenctlError(f"{type(loop).__name__} context", got=loop.context, expected="an integer >= 2 (BOS + one token)")
