"""The network: shapes, MANIQA's weighted score, prompts, Swin masking, both sizes, ImageNet loading."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mediqa.errors import ModelError
from mediqa.training.maniqa_blocks import shifted_window_mask, window_partition, window_reverse
from mediqa.training.model import SIZES, ArchConfig, arch_for, build_model, count_parameters
from mediqa.training.pretrained import load_vit_weights, map_timm_keys
from mediqa.training.vit import VisionTransformer

TINY = ArchConfig(size="tiny", img_size=32, patch=8, vit_dim=16, vit_heads=2, taps=(0, 1), embed_dim=16,
                  dim_mlp=16, swin_heads=(2, 2), window=2, num_physics=3)


def _inputs(n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.rand(n, 3, 32, 32) * 2 - 1, torch.tensor([[2, 1, 3, 4]] * n)


@pytest.mark.slow
def test_forward_shapes_and_score_range_scaling() -> None:
    model = build_model(TINY, torch.tensor([[-5.0, 0.0], [0.0, 1.0], [1.0, 3.0]])).eval()
    image, prompt = _inputs()
    quality, physics = model(image, prompt)
    assert quality.shape == (3,) and physics.shape == (3, 3)
    with torch.no_grad():
        tokens = model.features(image, prompt)
        s = model.head.fc_score(tokens).squeeze(-1)
        w = model.head.fc_weight(tokens).squeeze(-1)
        expected = 4.0 * (w * s).sum(1) / w.sum(1)  # q = sum(w s) / sum(w) on the 0..4 scale
        raw = model.physics_head(tokens.mean(1))
    torch.testing.assert_close(quality, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(physics[:, 0], -5.0 + 5.0 * raw[:, 0])  # head range applied
    torch.testing.assert_close(physics[:, 2], 1.0 + 2.0 * raw[:, 2])


def test_prompt_changes_output_only_when_enabled() -> None:
    image, prompt = _inputs()
    other = prompt.clone()
    other[:, 1] = 2
    with_prompt = build_model(TINY).eval()
    assert not torch.allclose(with_prompt(image, prompt)[0], with_prompt(image, other)[0])
    without = build_model(dataclasses.replace(TINY, prompts=False)).eval()
    torch.testing.assert_close(without(image, prompt)[0], without(image, other)[0])
    assert without.prompt1 is None


def test_window_partition_roundtrip_and_shift_mask() -> None:
    x = torch.arange(2 * 8 * 8 * 3, dtype=torch.float32).reshape(2, 8, 8, 3)
    torch.testing.assert_close(window_reverse(window_partition(x, 4), 4, 8, 8), x)
    mask = shifted_window_mask(8, 8, 4, 2)
    assert mask.shape == (4, 16, 16)
    assert mask[0].abs().max() == 0  # the top-left window never straddles the wrap-around seam
    assert (mask[3] == -100).any()  # the bottom-right one holds pieces from all four corners


def test_edge_size_is_a_few_million_parameters() -> None:
    model = build_model(arch_for("edge", num_physics=5))
    assert 1.0e6 < count_parameters(model) < 5.0e6
    assert model.arch.img_size == 96 and model.grid == 12
    assert model.arch.num_tab == 1 and len(model.tablock1) == 1  # the latency budget (model docstring)


def test_maniqa_b8_config_matches_the_paper() -> None:
    arch = SIZES["maniqa-b8"]
    assert (arch.img_size, arch.patch, arch.vit_dim, arch.taps, arch.embed_dim) == (224, 8, 768, (6, 7, 8, 9), 768)
    assert arch.vit_dim * len(arch.taps) == 3072 and arch.scale == 0.8 and arch.window == 4
    assert arch.num_tab == 2


def test_arch_from_dict_rejects_unknown_keys() -> None:
    raw = dataclasses.asdict(TINY)
    assert ArchConfig.from_dict({k: list(v) if isinstance(v, tuple) else v for k, v in raw.items()}) == TINY
    with pytest.raises(ValueError, match="unknown architecture keys"):
        ArchConfig.from_dict({**raw, "depht": 3})


def _timm_like(dim: int, depth: int, grid: int) -> dict[str, torch.Tensor]:
    """A fake timm checkpoint: same names, classifier, final norm, a 'module.' wrapper."""
    torch.manual_seed(1)
    donor = VisionTransformer(grid * 8, 8, 3, dim, depth, 2, 4.0, (depth - 1,))
    state = {f"module.{k}": torch.randn_like(v) for k, v in donor.state_dict().items()}
    state["module.head.weight"] = torch.randn(1000, dim)
    state["module.norm.weight"] = torch.ones(dim)
    return state


def test_load_timm_state_dict_maps_keys_and_resamples_positions() -> None:
    state = _timm_like(dim=16, depth=4, grid=6)  # trained at 48 px, 4 blocks
    encoder = VisionTransformer(32, 8, 3, 16, 4, 2, 4.0, (0, 1))  # 32 px, only 2 blocks needed
    missing = load_vit_weights(encoder, state)
    assert missing == []
    torch.testing.assert_close(encoder.blocks[1].attn.qkv.weight, state["module.blocks.1.attn.qkv.weight"])
    assert encoder.pos_embed.shape == (1, 17, 16)
    torch.testing.assert_close(encoder.pos_embed[:, :1], state["module.pos_embed"][:, :1])
    assert "blocks.3.mlp.fc1.weight" not in map_timm_keys(state, depth=2)


def test_load_timm_state_dict_refuses_wrong_width(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "vit.pth"
    torch.save(_timm_like(dim=24, depth=2, grid=4), path)
    encoder = VisionTransformer(32, 8, 3, 16, 2, 2, 4.0, (0, 1))
    with pytest.raises(ModelError, match="shape"):
        load_vit_weights(encoder, path)
