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
