"""VideoBERT network: shapes, padding, BERT import, visual-word initialisation, save/load."""

import numpy as np
import pytest
import torch

from videobert.bert_import import bert_config, init_visual_embeddings, load_bert_weights
from videobert.errors import ConfigError, InputError
from videobert.model import ModelConfig, VideoBERT, flops_per_token
from videobert.inputs import TokenLayout, build_input, collate_inputs

TEXT_VOCAB, VISUAL_VOCAB = 120, 40
LAYOUT = TokenLayout(TEXT_VOCAB, VISUAL_VOCAB, pad_id=0, cls_id=2, sep_id=3, mask_id=4, text_special_ids=(0, 1, 2, 3, 4))


def tiny(**overrides) -> VideoBERT:
    torch.manual_seed(0)
    return VideoBERT(ModelConfig.preset("tiny", TEXT_VOCAB, VISUAL_VOCAB, **overrides)).eval()


def example_batch():
    inputs = [
        build_input(LAYOUT, [10, 11, 12], [5, 6, 7, 8]),
        build_input(LAYOUT, [20, 21], None),
        build_input(LAYOUT, None, [1, 2]),
    ]
    return collate_inputs(inputs, LAYOUT.pad_id)


def test_forward_shapes_full_and_selected_positions():
    model = tiny()
    batch = example_batch()
    out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    batch_size, length = batch["input_ids"].shape
    assert out.mlm_logits.shape == (batch_size, length, TEXT_VOCAB + 1 + VISUAL_VOCAB)
    assert out.align_logits.shape == (batch_size,)
    assert out.hidden_states.shape == (batch_size, length, 64)
    positions = torch.tensor([1, length + 2, 2 * length + 1])
    selected = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], mlm_positions=positions)
    assert selected.mlm_logits.shape == (3, model.config.vocab_size)
    torch.testing.assert_close(selected.mlm_logits, out.mlm_logits.reshape(-1, model.config.vocab_size)[positions])


def test_padding_does_not_change_a_sequence():
    model = tiny()
    batch = example_batch()
    out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    for row in range(3):
        n = int(batch["attention_mask"][row].sum())
        alone = model(batch["input_ids"][row : row + 1, :n], batch["token_type_ids"][row : row + 1, :n])
        torch.testing.assert_close(alone.mlm_logits[0], out.mlm_logits[row, :n], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(alone.align_logits, out.align_logits[row : row + 1], atol=1e-5, rtol=1e-5)


def test_a_padded_batch_trains_as_its_sequences_alone():
    # the padded batch runs on its real tokens only: its gradients are the sum of each sequence's
    # own, and the padded positions' states are zeros
    model = tiny()
    batch = example_batch()
    lengths = batch["attention_mask"].sum(1).tolist()
    assert len(set(lengths)) > 1
    out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    (out.mlm_logits[batch["attention_mask"].bool()].square().sum() + out.align_logits.sum()).backward()
    padded = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    for row, n in enumerate(lengths):
        alone = model(batch["input_ids"][row : row + 1, :n], batch["token_type_ids"][row : row + 1, :n])
        (alone.mlm_logits.square().sum() + alone.align_logits.sum()).backward()
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(padded[name], p.grad, atol=1e-4, rtol=1e-4, msg=name)
    assert torch.all(out.hidden_states[~batch["attention_mask"].bool()] == 0)


def test_presets_and_config_errors():
    large = ModelConfig.preset("large", 30522, 20736)
    assert (large.hidden_size, large.layers, large.heads, large.intermediate_size) == (1024, 24, 16, 4096)
    assert large.vocab_size == 30522 + 1 + 20736 and large.visual_offset == 30523
    assert ModelConfig.preset("base", 10, 10, layers=3).layers == 3
    with pytest.raises(ConfigError, match="multiple of heads"):
        ModelConfig.preset("tiny", 10, 10, heads=3)
    with pytest.raises(ConfigError, match="preset"):
        ModelConfig.preset("huge", 10, 10)


def _hf_bert(folder, vocab_size=TEXT_VOCAB):
    from transformers import BertConfig, BertForPreTraining

    torch.manual_seed(1)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, attn_implementation="sdpa")
    hf = BertForPreTraining(config).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases, so that a missed copy shows
        for name, param in hf.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.1)
    hf.save_pretrained(folder)
    return hf


def test_hf_bert_import_reproduces_its_outputs_on_text(tmp_path):
    hf = _hf_bert(tmp_path / "bert")
    sizes = bert_config(tmp_path / "bert")
    model = VideoBERT(ModelConfig(**sizes, visual_vocab_size=VISUAL_VOCAB)).eval()
    load_bert_weights(model, tmp_path / "bert")
    inputs = [build_input(LAYOUT, list(range(5, 5 + n)), None) for n in (9, 4, 6)]
    batch = collate_inputs(inputs, LAYOUT.pad_id)
    with torch.no_grad():
        expected = hf(**batch)
        out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(out.mlm_logits[..., :TEXT_VOCAB][real], expected.prediction_logits[real], atol=1e-4, rtol=1e-4)
    nsp = expected.seq_relationship_logits
    torch.testing.assert_close(out.align_logits, nsp[:, 0] - nsp[:, 1], atol=1e-5, rtol=1e-5)


def test_hf_bert_import_refuses_a_different_text_vocabulary(tmp_path):
    _hf_bert(tmp_path / "bert", vocab_size=TEXT_VOCAB + 5)
    with pytest.raises(ConfigError, match="vocabulary"):
        load_bert_weights(tiny(hidden_size=32, heads=4, intermediate_size=64), tmp_path / "bert")


def test_pickled_bert_weights_are_loaded_safely_or_refused(tmp_path):
    import os

    hf = _hf_bert(tmp_path / "bert")
    os.remove(tmp_path / "bert" / "model.safetensors")
    torch.save(hf.state_dict(), tmp_path / "bert" / "pytorch_model.bin")  # plain tensors: accepted
    model = VideoBERT(ModelConfig(**bert_config(tmp_path / "bert"), visual_vocab_size=VISUAL_VOCAB))
    load_bert_weights(model, tmp_path / "bert")
    torch.testing.assert_close(model.embeddings.position.weight, hf.bert.embeddings.position_embeddings.weight)

    marker = tmp_path / "pwned"
    torch.save({"weights": _Payload(str(marker))}, tmp_path / "bert" / "pytorch_model.bin")
    with pytest.raises(InputError, match="refused"):
        load_bert_weights(model, tmp_path / "bert")
    assert not marker.exists()


class _Payload:
    """Unpickling this would create a file: what a malicious checkpoint does."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("dim", [64, 200, 16])
def test_visual_embeddings_from_centroids_keep_their_geometry(dim):
    model = tiny()
    rng = np.random.default_rng(0)
    # centroids in a subspace of at most the hidden size: the mapping must be a scaled isometry
    basis = np.linalg.qr(rng.standard_normal((dim, min(dim, 64))))[0]
    centroids = rng.standard_normal((VISUAL_VOCAB, basis.shape[1])) @ basis.T + 3.0
    init_visual_embeddings(model, centroids)
    word = model.embeddings.word.weight.detach().numpy().astype(np.float64)
    visual = word[model.config.visual_offset :]
    assert np.isclose(visual.std(), word[:TEXT_VOCAB].std(), rtol=1e-3)
    original = np.linalg.norm(centroids[:, None] - centroids[None], axis=-1)
    mapped = np.linalg.norm(visual[:, None] - visual[None], axis=-1)
    off = ~np.eye(VISUAL_VOCAB, dtype=bool)
    ratio = mapped[off] / original[off]
    assert np.allclose(ratio, ratio.mean(), rtol=1e-3)
    assert np.all(model.mlm_bias.detach().numpy()[model.config.visual_offset :] == 0)


def test_visual_embeddings_refuse_a_wrong_vocabulary_size():
    with pytest.raises(InputError, match="40 words"):
        init_visual_embeddings(tiny(), np.zeros((VISUAL_VOCAB + 1, 8)))


def test_save_and_from_pretrained_round_trip(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path / "run")
    loaded = VideoBERT.from_pretrained(tmp_path / "run", device="cpu")
    assert not loaded.training and loaded.config == model.config
    batch = example_batch()
    with torch.no_grad():
        a = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        b = loaded(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    assert torch.equal(a.mlm_logits, b.mlm_logits) and torch.equal(a.align_logits, b.align_logits)
    with pytest.raises(InputError, match="not found"):
        VideoBERT.from_pretrained(tmp_path / "nowhere")


def test_frozen_embeddings_stay_fixed_while_the_rest_trains():
    model = tiny().train()
    model.freeze_embeddings()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = example_batch()
    out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    (out.mlm_logits.logsumexp(-1).mean() + out.align_logits.sum()).backward()
    optimizer.step()
    assert torch.equal(model.embeddings.word.weight, before["embeddings.word.weight"])
    assert not torch.equal(model.blocks[0].qkv.weight, before["blocks.0.qkv.weight"])
    assert not torch.equal(model.mlm_bias, before["mlm_bias"])


def test_flop_formula_counts_the_matrix_weights():
    model = tiny()
    matmul_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    matmul_weights += model.embeddings.word.weight.numel()  # the tied output projection
    matmul_weights -= model.align_head.weight.numel()  # one output: negligible, left out of the formula
    config = model.config
    attention = 12 * config.layers * config.hidden_size * 100
    assert flops_per_token(config, 100) == 6 * matmul_weights + attention
