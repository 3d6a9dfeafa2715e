"""textdiffusion — text-to-image DDPM: a UNet that reads a prompt's token states by cross-attention.

diffusers' text-to-image pipeline in small: a frozen sentence encoder (all-MiniLM-L6-v2, 384-d,
``text_encoder.py``) turns the prompt into token states; the denoiser (the diffusion family's UNet,
``trunk``) gets the pooled prompt in its embedding and attends to the masked token states after
every ResBlock (``CrossAttention``: queries from image features, keys/values from the tokens).
``cfg_dropout`` of the captions are replaced by the empty prompt's encoding, so the same network
predicts eps(x_t | prompt) and eps(x_t | "") for classifier-free guidance (Ho & Salimans 2022).

Training captions are built from each image's label and two attributes *measured on the image*
(``genctl/data/captions.py``: thickness from ink, slant from moments; per-class terciles), in the
TRAIN phrasings; eval prompts use only the HELD_OUT phrasings. A user dataset with captions
(an image folder + ``captions.csv``) trains on its own captions.

Exports three graphs:
- ``encoder(input_ids, attention_mask) -> (states, pooled)``: the sentence encoder, run once per
  request by the ``text`` condition's encode stage (never per step);
- ``step(x_t, t, alpha_bar_t, alpha_bar_prev, caption_states, caption_mask, guidance_scale, eta,
  noise, x0_prev, x0_delta_coef) -> (x_prev, x0_out)``: UNet on [prompt; empty prompt] (the null
  encoding is a constant of the graph, computed when training started), guidance, the DDIM/DDPM or
  DPM-Solver++(2M) update (``schedule.solver_update``) — one call per step;
- ``denoiser(x_t, t, caption_states, caption_mask) -> eps``: the plain network.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genctl import progress
from genctl.conditions import ConditionSchema, Text
from genctl.errors import GenctlError
from genctl.families import schedule
from genctl.families.base import Family, GraphDef
from genctl.families.diffusion import DiffusionConfig, UNet, _ema_update, timestep_embedding
from genctl.families.diffusion import _hp as diffusion_hp
from genctl.families.loop import batches
from genctl.spec import GraphSpec, TensorSpec

CONDITION = "caption"
DIGIT_DATASETS = ("digits", "mnist")  # captioned from labels + measured attributes (genctl/data/captions.py)


@dataclass(kw_only=True)
class TextDiffusionConfig(DiffusionConfig):
    encoder: str = "minilm"  # "minilm": the shipped all-MiniLM-L6-v2; "tiny": a random 2-layer BERT (tests)
    max_tokens: int = 24  # prompt length limit, [CLS]/[SEP] included (the longest training caption: 19)
    heads: int = 4  # cross-attention heads (must divide every level's channels)
    captions_per_image: int = 8  # distinct training phrasings per image, encoded once before training
    omit_attribute: float = 0.15  # share of captions that leave out thickness or slant ("a bold 7", "a 7")
    default_guidance: float = 3.0


# ------------------------------------------------------------------------------------- network

class CrossAttention(nn.Module):
    """Image features attend to prompt tokens: softmax(Q K^T / sqrt(d) + mask) V, added residually."""

    def __init__(self, channels: int, ctx_dim: int, heads: int, groups: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(ctx_dim, 2 * channels)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)  # starts as the identity: the UNet first learns without text
        nn.init.zeros_(self.out.bias)

    def forward(self, h: torch.Tensor, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, height, width = h.shape
        d = c // self.heads
        x = self.norm(h).flatten(2).transpose(1, 2)  # (B, HW, C)
        q = self.q(x).reshape(b, -1, self.heads, d).transpose(1, 2)  # (B, heads, HW, d)
        k, v = self.kv(states).reshape(b, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)  # 2 x (B, heads, L, d)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # (B, heads, HW, L)
        scores = scores + (1.0 - mask.to(scores.dtype))[:, None, None, :] * -1e9  # padded tokens get no weight
        y = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, -1, c)  # (B, HW, C)
        return h + self.out(y).transpose(1, 2).reshape(b, c, height, width)


class TextUNet(UNet):
    """eps_theta(x_t, t, prompt): the diffusion UNet, conditioned by the pooled prompt and by
    cross-attention to the prompt's token states after every ResBlock."""

    def __init__(self, shape: list[int], ctx_dim: int, hp: TextDiffusionConfig):
        super().__init__(shape, 0, hp)
        del self.label_embed  # no classes: the prompt is the condition
        emb_dim = 4 * hp.width
        self.text_embed = nn.Sequential(nn.Linear(ctx_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.attn = nn.ModuleList(CrossAttention(c, ctx_dim, hp.heads, hp.groups) for c in self.block_channels())

    def forward(self, x: torch.Tensor, t: torch.Tensor, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(states.dtype)[..., None]  # (B, L, 1)
        pooled = (states * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)  # (B, D) mean of the real tokens
        emb = self.time_mlp(timestep_embedding(t, self.width)) + self.text_embed(pooled)  # (B, E)
        return self.trunk(x, emb, lambda h, i: self.attn[i](h, states, mask))


class TextDiffusionModel(nn.Module):
    """The text UNet, the frozen sentence encoder it was trained with, and the empty prompt's
    encoding (``null_states``/``null_mask``: the CFG null, saved with the weights)."""

    def __init__(self, shape: list[int], hp: TextDiffusionConfig, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        dim = encoder.hidden_size
        self.unet = TextUNet(shape, dim, hp)
        self.cfg_dropout = hp.cfg_dropout
        self.register_buffer("null_states", torch.zeros(hp.max_tokens, dim))
        self.register_buffer("null_mask", torch.zeros(hp.max_tokens, dtype=torch.int64))
        ab = torch.tensor(schedule.alphas_cumprod(schedule.betas_for(hp.schedule, hp.timesteps)), dtype=torch.float32)
        self.register_buffer("alpha_bar", ab, persistent=False)

    def nulls(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.null_states.expand(b, -1, -1), self.null_mask.expand(b, -1)

    def loss(self, x0: torch.Tensor, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """DDPM simple loss (eq. 14); ``cfg_dropout`` of the prompts become the empty prompt."""
        t = torch.randint(0, len(self.alpha_bar), (x0.shape[0],))
        noise = torch.randn_like(x0)
        x_t = schedule.q_sample(x0, self.alpha_bar[t], noise)
        drop = (torch.rand(x0.shape[0]) < self.cfg_dropout)[:, None]
        null_states, null_mask = self.nulls(x0.shape[0])
        states = torch.where(drop[..., None], null_states, states)
        mask = torch.where(drop, null_mask, mask)
        return F.mse_loss(self.unet(x_t, t, states, mask), noise)


class TextStepGraph(nn.Module):
    """The fused step: UNet on [prompt; empty prompt] -> guidance -> DDIM / DPM-Solver++ update
    (without ``x0_prev``: the old DDIM step of a bundle exported before DPM-Solver++)."""

    def __init__(self, model: TextDiffusionModel):
        super().__init__()
        self.unet = model.unet
        self.register_buffer("null_states", model.null_states.clone())
        self.register_buffer("null_mask", model.null_mask.clone())

    def forward(self, x_t, t, alpha_bar_t, alpha_bar_prev, caption_states, caption_mask, guidance_scale, eta, noise,
                x0_prev=None, x0_delta_coef=None):
        b = x_t.shape[0]
        states = torch.cat([caption_states, self.null_states.expand(b, -1, -1)])  # (2B, L, D)
        mask = torch.cat([caption_mask, self.null_mask.expand(b, -1)])  # (2B, L)
        eps = self.unet(torch.cat([x_t, x_t]), torch.cat([t, t]), states, mask)  # (2B, C, H, W)
        eps = schedule.guided_eps(eps[:b], eps[b:], guidance_scale)
        return schedule.solver_update(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, noise, x0_prev, x0_delta_coef)


# -------------------------------------------------------------------------------------- training

def encode_texts(model: TextDiffusionModel, texts: list[str], max_tokens: int, batch: int = 256
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token states and masks of ``texts`` with the model's frozen encoder: (N, L, D), (N, L)."""
    from genctl.families.text_encoder import minilm_tokenizer_file
    from genctl.text_tokens import PromptTokenizer

    tok = PromptTokenizer.from_file(minilm_tokenizer_file(), max_tokens)
    states, masks = [], []
    with torch.inference_mode(), progress.bar("encode captions", -(-len(texts) // batch)) as advance:
        for i in range(0, len(texts), batch):
            ids, mask, truncated = tok.encode(texts[i:i + batch], fixed=True)
            if any(truncated):
                long = texts[i + truncated.index(True)]
                raise GenctlError(f"Caption {long[:60]!r}", got=f"more than {max_tokens} tokens",
                                  expected=f"captions within max_tokens={max_tokens}", fix="raise --hparam max_tokens or shorten the captions")
            s, _ = model.encoder(torch.from_numpy(ids), torch.from_numpy(mask))
            states.append(s.clone())
            masks.append(torch.from_numpy(mask))
            advance()
    return torch.cat(states), torch.cat(masks)


def training_captions(dataset, hp: TextDiffusionConfig, seed: int) -> tuple[list[str], np.ndarray, dict | None]:
    """``(captions, caption_index (N, K), thresholds)``: K phrasings per training image.

    Images with captions of their own (a user folder's ``captions.csv``) keep them (K = 1): every
    image of the folder needs one (one-line refusal naming how many lack one and the first such file;
    train and test images alike, so the outcome does not depend on the split). The shipped digit
    datasets are captioned from labels and measured attributes (thresholds stored for eval). Any
    other dataset without captions (a user folder without captions.csv, an .npz) is refused in one
    line: labels alone do not say what a user's class names mean as digits.
    """
    own = getattr(dataset, "captions_train", None)
    if own is not None:
        _check_own_captions(dataset)
        texts = sorted(set(own))
        index = {t: i for i, t in enumerate(texts)}
        return texts, np.asarray([[index[c]] for c in own], dtype=np.int64), None
    from genctl.data import captions

    if dataset.name not in DIGIT_DATASETS:
        name = str(dataset.name).removeprefix("user:")
        classes = list(dataset.label_names)
        raise GenctlError(f"Dataset '{name}' for textdiffusion",
                          got=f"no captions (classes {classes[:4]}{' ...' if len(classes) > 4 else ''})",
                          expected=f"an image folder with a captions.csv (file,caption), or one of {list(DIGIT_DATASETS)}",
                          fix="textdiffusion needs captions.csv beside the class folders (one 'class/image.png,caption' "
                              "line per image) or a shipped digit dataset")
    x, y = dataset.x_train, dataset.y_train
    thick, slant, thresholds = captions.attribute_bins(y, captions.ink(x), captions.slant(x))
    per_image = [captions.captions_for(y, thick, slant, seed=seed * 1000 + k, omit=hp.omit_attribute)
                 for k in range(hp.captions_per_image)]
    texts = sorted({c for column in per_image for c in column})
    index = {t: i for i, t in enumerate(texts)}
    table = np.asarray([[index[column[i]] for column in per_image] for i in range(len(y))], dtype=np.int64)
    return texts, table, thresholds


def _check_own_captions(dataset) -> None:
    """Refuse images without a caption: how many, and the first one (sorted file path)."""
    caps = list(dataset.captions_train) + list(getattr(dataset, "captions_test", None) or [])
    files = list(getattr(dataset, "files_train", None) or []) + list(getattr(dataset, "files_test", None) or [])
    missing = sorted({f for f, c in zip(files, caps) if c is None}) if len(files) == len(caps) else []
    n_missing = len(missing) if missing else sum(c is None for c in caps)
    if n_missing:
        total = len(set(files)) if len(files) == len(caps) else len(caps)
        first = f" (first: '{missing[0]}')" if missing else ""
        raise GenctlError(f"Dataset '{str(dataset.name).removeprefix('user:')}' captions",
                          got=f"{n_missing} of {total} images without a caption in captions.csv{first}",
                          expected="one file,caption line per image (textdiffusion trains on every image's caption)",
                          fix="add the missing lines, or move those images out of the folder")


def train_loop(model: TextDiffusionModel, dataset, hp: TextDiffusionConfig, epochs: int, seed: int) -> dict:
    """Encode every training caption once, then Adam on the simple loss with an EMA of the UNet."""
    import copy

    texts, table, thresholds = training_captions(dataset, hp, seed)
    states, masks = encode_texts(model, texts, hp.max_tokens)
    null_states, null_mask = encode_texts(model, [""], hp.max_tokens)
    model.null_states.copy_(null_states[0])
    model.null_mask.copy_(null_mask[0])
    params = list(model.unet.parameters())
    opt = torch.optim.Adam(params, lr=hp.lr)
    ema = copy.deepcopy(model.unet).eval() if hp.ema_decay > 0 else None
    rng, n_steps, x = np.random.default_rng(seed), 0, dataset.x_train
    rows = np.arange(len(x))
    start, epoch_loss = time.perf_counter(), float("nan")
    model.unet.train()
    with progress.bar("train textdiffusion", epochs * -(-len(x) // hp.batch_size)) as advance:
        for epoch in range(epochs):
            total, count = 0.0, 0
            for xb, ib in batches([x, rows], hp.batch_size, rng):
                pick = table[ib.numpy(), rng.integers(table.shape[1], size=len(ib))]  # one phrasing per image per step
                loss = model.loss(xb, states[pick], masks[pick])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                n_steps += 1
                if ema is not None:
                    _ema_update(ema, model.unet, min(hp.ema_decay, (1 + n_steps) / (10 + n_steps)))
                total, count = total + loss.item() * len(xb), count + len(xb)
                advance(epoch=epoch + 1, loss=total / count)
            epoch_loss = total / count
    if ema is not None:
        model.unet.load_state_dict(ema.state_dict())
    model.eval()
    metrics = {"loss": epoch_loss, "steps": n_steps, "captions": len(texts), "seconds": round(time.perf_counter() - start, 1)}
    if thresholds is not None:
        metrics["attribute_thresholds"] = thresholds
    return metrics


# ---------------------------------------------------------------------------------------- family

class TextDiffusion(Family):
    name = "textdiffusion"
    label_conditioned = False  # conditioned on captions: one class folder is enough
    sampler = "diffusion"
    Config = TextDiffusionConfig
    default_epochs = {"digits": 60, "mnist": 40}

    def build_model(self, config: dict) -> TextDiffusionModel:
        from genctl.families import text_encoder

        hp = _hp(config)
        enc_config = config.get("text_encoder")
        if enc_config is not None:  # a trained checkpoint: rebuild the encoder it was trained with
            encoder = text_encoder.encoder_from_config(enc_config, None)
        else:
            encoder = text_encoder.load_minilm() if hp.encoder == "minilm" else text_encoder.tiny_encoder(seed=0)
            config["text_encoder"] = text_encoder.encoder_config(encoder)
        return TextDiffusionModel(config["dataset"]["shape"], hp, encoder)

    def train(self, model: TextDiffusionModel, dataset, config: dict, epochs: int) -> dict:
        return train_loop(model, dataset, _hp(config), epochs, config["train"]["seed"])

    def conditions(self, config: dict) -> ConditionSchema:
        hp = _hp(config)
        dim = int(config["text_encoder"]["bert"]["hidden_size"])
        return ConditionSchema([Text(CONDITION, dim=dim, max_tokens=hp.max_tokens, encoder="encoder")])

    def source_files(self, config: dict) -> dict[str, bytes]:
        """The tokenizer of the encoder (MiniLM's WordPiece; the tiny test encoder shares its vocabulary)."""
        from genctl.families.text_encoder import minilm_tokenizer_file

        return {"tokenizer.json": minilm_tokenizer_file().read_bytes()}

    def graphs(self, model: TextDiffusionModel, config: dict) -> dict[str, GraphDef]:
        from genctl.families.text_encoder import encoder_graph

        shape, hp = config["dataset"]["shape"], _hp(config)
        cond = self.conditions(config).conditions[0]
        image = ["batch", *shape]
        per_sample = lambda name: TensorSpec(name, "float32", ["batch"], "control")  # noqa: E731
        x_t = TensorSpec("x_t", "float32", image, "state")
        t = TensorSpec("t", "int64", ["batch"], "control", high=hp.timesteps)
        text = cond.specs()
        solver_in, solver_out = schedule.solver_specs(image)
        step = GraphSpec("step", inputs=[x_t, t, per_sample("alpha_bar_t"), per_sample("alpha_bar_prev"), *text,
                                         per_sample("guidance_scale"), per_sample("eta"),
                                         TensorSpec("noise", "float32", image, "noise"), *solver_in],
                         outputs=solver_out, feeds_back=dict(schedule.FEEDS_BACK),
                         doc="one CFG denoising step: UNet on [prompt; empty prompt], eps_u + w (eps_c - eps_u), "
                             "DDIM(eta) update + x0_delta_coef (x0 - x0_prev) (DPM-Solver++(2M))")
        denoiser = GraphSpec("denoiser", inputs=[x_t, t, *text], outputs=[TensorSpec("eps", "float32", image, "output")],
                             doc="eps_theta(x_t, t, prompt states): the text UNet")
        feeds = {k: torch.from_numpy(v) for k, v in cond.example_feeds(2).items()}
        ex = {"x_t": torch.randn(2, *shape), "t": torch.tensor([3, hp.timesteps - 1]), "noise": torch.randn(2, *shape), **feeds}
        step_ex = dict(ex, alpha_bar_t=torch.tensor([0.05, 0.95]), alpha_bar_prev=torch.tensor([0.5, 1.0]),
                       guidance_scale=torch.tensor([0.0, 5.0]), eta=torch.tensor([0.0, 1.0]), **schedule.solver_examples(shape))
        enc = encoder_graph(model.encoder, max_len=hp.max_tokens, name="encoder")
        return {"encoder": enc,
                "step": GraphDef(TextStepGraph(model), step_ex, step),
                "denoiser": GraphDef(_Denoiser(model.unet), {k: ex[k] for k in denoiser.input_names}, denoiser)}

    def sampler_section(self, config: dict) -> dict:
        hp = _hp(config)
        return {"kind": "diffusion", "graph": "step", "denoiser": "denoiser", "cfg_dropout": hp.cfg_dropout,
                "unconditional": hp.cfg_dropout > 0, "loop_tolerance_factor": 1,
                "defaults": {"steps": hp.default_steps, "guidance_scale": hp.default_guidance if hp.cfg_dropout > 0 else 1.0,
                             "eta": 0.0, "sampler": "ddim"}}

    def info(self, config: dict) -> dict:
        hp = _hp(config)
        betas = schedule.betas_for(hp.schedule, hp.timesteps)
        info = {**super().info(config), "prediction": "epsilon", "cfg_dropout": hp.cfg_dropout,
                "schedule": {"kind": hp.schedule, "timesteps": hp.timesteps, "betas": [float(b) for b in betas]},
                "text_encoder": {"kind": hp.encoder, "hidden_size": int(config["text_encoder"]["bert"]["hidden_size"]),
                                 "layers": int(config["text_encoder"]["bert"]["num_hidden_layers"])}}
        thresholds = config.get("train", {}).get("attribute_thresholds")
        if thresholds:
            info["attributes"] = thresholds  # eval measures generated images against what a prompt asked
        return info


class _Denoiser(nn.Module):
    """``forward(x_t, t, caption_states, caption_mask)``: the UNet under the graph's input names."""

    def __init__(self, unet: TextUNet):
        super().__init__()
        self.unet = unet

    def forward(self, x_t, t, caption_states, caption_mask):
        return self.unet(x_t, t, caption_states, caption_mask)


def _hp(config: dict) -> TextDiffusionConfig:
    return diffusion_hp(config, TextDiffusionConfig)
