"""The model FLOPs behind every GPU record's MFU: what is counted per trained token."""

from __future__ import annotations

import pytest

from xorder.throughput import flops_per_token


def _xlmr_config():
    from transformers import XLMRobertaConfig

    # a vocabulary far larger than the layers, as XLM-R's is (250k rows against 24 layers)
    return XLMRobertaConfig(
        vocab_size=20_000,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        type_vocab_size=1,
    )


def _layer_parameters(encoder) -> int:
    return sum(p.numel() for p in encoder.encoder.parameters())


def test_flops_count_the_encoder_layers_not_the_tied_decoder_nor_the_embeddings():
    from transformers import XLMRobertaForMaskedLM

    model = XLMRobertaForMaskedLM(_xlmr_config())
    # transformers 5 lists the tied word embedding under the LM head's decoder: the trap the count must avoid
    assert any(name == "lm_head.decoder.weight" for name, _ in model.named_parameters())
    layers = _layer_parameters(model.roberta)
    attention = 12.0 * 2 * 32 * 50.0
    assert flops_per_token(model, 50.0) == pytest.approx(6.0 * layers + attention)
    assert 6.0 * 20_000 * 32 > flops_per_token(model, 50.0)  # the embedding alone would have dominated


def test_flops_leave_out_the_pooler_of_a_bare_encoder():
    from transformers import XLMRobertaModel

    model = XLMRobertaModel(_xlmr_config())  # with a pooler: one matrix per sequence, not per token
    assert model.pooler is not None
    assert flops_per_token(model, 10.0) == pytest.approx(6.0 * _layer_parameters(model) + 12.0 * 2 * 32 * 10.0)
