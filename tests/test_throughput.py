"""The model FLOPs behind every GPU record's MFU: what is counted per trained token."""

from __future__ import annotations

import pytest

from xorder.pipeline.throughput import flops_per_token


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


def _summary(warm, device="cpu"):
    import torch

    from xorder.pipeline.throughput import summarize

    backbone = torch.nn.Linear(2, 2)
    return summarize(
        examples=1000,
        tokens=50_000,
        padded=64_000,
        seconds=30.0,
        train_seconds=25.0,
        processes=1,
        backbone=backbone,
        device=torch.device(device),
        precision="bf16",
        warm=warm,
    )


def test_the_steady_rate_leaves_out_the_first_logging_window():
    # 200 examples took 15 s (compilation), the other 800 took 10 s
    speed = _summary([15.0, 200, 10_000])
    assert speed.samples_per_second == pytest.approx(40.0)
    assert speed.steady_samples_per_second == pytest.approx(80.0)
    assert speed.padding_fraction == round(1 - 50_000 / 64_000, 4)
    assert speed.mfu is None and speed.steady_mfu is None and speed.gpu_hours is None  # a CPU has none


def test_no_steady_rate_without_a_window_after_the_first():
    assert _summary(None).steady_samples_per_second is None
    assert _summary([25.0, 1000, 50_000]).steady_samples_per_second is None


def test_the_steady_mfu_uses_the_same_count_as_the_whole_stage(monkeypatch):
    import torch

    from xorder.pipeline import throughput

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(throughput, "flops_per_token", lambda backbone, mean_length: 1e9)
    monkeypatch.setattr(throughput, "peak_memory_mb", lambda device: 1.0)
    speed = _summary([15.0, 200, 10_000], device="cuda")
    assert speed.mfu == pytest.approx(round(1e9 * 50_000 / 25.0 / 989e12, 4))
    assert speed.steady_mfu == pytest.approx(round(1e9 * 40_000 / 10.0 / 989e12, 4))
    assert speed.gpu_hours == pytest.approx(round(30.0 / 3600, 4))
