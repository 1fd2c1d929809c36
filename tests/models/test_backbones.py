"""The backbone registry."""

import pytest

import radtransfer as rt
from radtransfer.models.backbones import get_backbone


@pytest.mark.parametrize(
    "alias, name",
    [
        ("ResNet50", "resnet50"),
        ("resnet50", "resnet50"),
        ("DenseNet121", "densenet121"),
        ("DENSENET121", "densenet121"),
        ("InceptionV3", "inception_v3"),
        ("inception-v3", "inception_v3"),
        ("IRV2", "inception_resnet_v2"),
        ("irv2", "inception_resnet_v2"),
        ("InceptionResNetV2", "inception_resnet_v2"),
    ],
)
def test_aliases_are_case_insensitive(alias, name):
    assert get_backbone(alias).name == name


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ValueError, match='Did you mean "densenet121"') as info:
        rt.build_model("densnet121", weights=None)
    assert "Received: backbone='densnet121'" in str(info.value)


def test_list_backbones():
    assert rt.list_backbones() == ["resnet50", "densenet121", "inception_v3", "inception_resnet_v2"]


def test_minimum_sizes():
    assert {n: get_backbone(n).min_size for n in rt.list_backbones()} == {
        "resnet50": 32,
        "densenet121": 32,
        "inception_v3": 75,
        "inception_resnet_v2": 75,
    }


def test_the_test_backbone_is_found_by_name_never_listed_and_follows_the_strategies():
    """``test_tiny`` (timm's ``test_*`` models): a 12-layer network for tests of loops, grids, commands and input
    kinds; its trainable counts are those of its layers, counted here by hand."""
    assert "test_tiny" not in rt.list_backbones() and "test_tiny" not in rt.BACKBONES
    model = rt.build_model("test_tiny", weights=None, num_classes=2, input_shape=(16, 16, 1))
    backbone = model.get_layer("backbone")
    assert len(backbone.layers) == 12 and backbone.layers[-1].name == "avg_pool"
    assert sum(1 for layer in backbone.layers if layer.weights) == get_backbone("test_tiny").weight_layers == 6
    head = 16 * 2 + 2
    conv = {"stem_conv": 3 * 3 * 3 * 8, "block1_conv": 3 * 3 * 8 * 16, "block2_conv": 3 * 3 * 16 * 16}
    bn = {"stem_bn": 2 * 8, "block1_bn": 2 * 16, "block2_bn": 2 * 16}  # gamma and beta
    expected = {
        "freeze_all": head,
        "unfreeze_top10": head + sum(conv.values()) - conv["stem_conv"] + sum(bn.values()),  # all but input, stem_conv
        "unfreeze_all": head + sum(conv.values()) + sum(bn.values()),
        "unfreeze_blocks:1": head + conv["block2_conv"] + bn["block2_bn"],
    }
    for strategy, count in expected.items():
        assert rt.apply_strategy(model, strategy).trainable_params == count, strategy
    with pytest.raises(ValueError, match="at least 8"):
        rt.build_model("test_tiny", weights=None, input_shape=(4, 4, 3))
