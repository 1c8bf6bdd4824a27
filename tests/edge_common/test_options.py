"""One option, one place: command lines generated from config dataclasses, and documented."""

from __future__ import annotations

from dataclasses import dataclass, fields

import pytest

from edge_common.cli import ArgumentParser, add_options, check_ranges, config_from_args, option, resume_keys
from edge_common.errors import EdgeError
from tests.helpers import run_cli


def test_a_new_field_is_a_new_option_with_its_help_choices_and_type():
    @dataclass(frozen=True)
    class Config:
        name: str = option("", cli=False)
        rate: float = option(0.5, "how fast")
        mode: str | None = option(help="which way", choices=("up", "down"), resume=True)
        sizes: tuple[int, ...] = option((8, 16), "sizes to try")
        plots: bool = option(True, "skip the plots")

    parser = ArgumentParser(prog="tool")
    add_options(parser, Config)
    text = parser.format_help()
    assert "--rate RATE" in text and "how fast (default: 0.5)" in text and "{up,down}" in text
    assert "--no-plots" in text and "--name" not in text
    config = config_from_args(
        Config, parser.parse_args(["--rate", "2", "--mode", "down", "--sizes", "1", "2", "--no-plots"]), name="x"
    )
    assert config == Config(name="x", rate=2.0, mode="down", sizes=(1, 2), plots=False)
    assert config_from_args(Config, parser.parse_args([]), name="x") == Config(name="x")
    assert resume_keys(Config) == ("mode",)
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "sideways"])


def test_abbreviated_options_are_refused_naming_the_real_one():
    result = run_cli("-m", "train", "edge_cnn", "--epoch", "1", timeout=120)
    assert result.returncode == 2
    assert "unrecognized arguments: --epoch 1" in result.stderr and "did you mean --epochs?" in result.stderr
    assert "--epocs" not in result.stderr and "Traceback" not in result.stderr


def test_train_options_come_from_train_config_and_resume_keys_from_its_metadata():
    from train import models
    from train.cli import build_parser
    from train.config import RESUME_KEYS, TrainConfig

    parser = build_parser()
    config = config_from_args(
        TrainConfig, parser.parse_args(["--epochs", "3", "--no-plots", "--distill", "0"]), model="camera_cnn"
    )
    assert config.epochs == 3 and config.plots is False and config.distill == 0.0
    resolved = config.resolved()
    assert resolved.batch_size == models.get("camera_cnn").recipe["batch_size"]  # the registry fills the rest
    assert resolved.patience == 4 and resolved.distill == 0.0 and resolved.epochs == 3
    assert "patience" not in RESUME_KEYS and {"epochs", "seed", "folder", "distill"} <= set(RESUME_KEYS)
    names = {field.name for field in fields(TrainConfig)}
    for spec in models.REGISTRY.values():  # a recipe can only set real options
        assert set(spec.recipe) <= names, spec.name


def test_registry_conversion_defaults_name_real_options_and_formats():
    from convert.converter import ConvertConfig
    from edge_runtime import formats
    from train import models

    options = {field.name for field in fields(ConvertConfig)}
    for spec in models.REGISTRY.values():
        assert set(spec.convert) <= options, spec.name
        assert set(spec.formats or ()) <= {fmt.name for fmt in formats.DEPLOYABLE}, spec.name
    resolved = ConvertConfig(model="imagenet_lite0").for_model("imagenet_lite0")
    assert resolved.formats == models.get("imagenet_lite0").formats and resolved.onnx.reduce_range is False
    assert resolved.onnx.weight_type == "uint8" and resolved.unlabelled_agreement_min == 0.8
    given = ConvertConfig(model="x", onnx_reduce_range=True, onnx_weights="int8").for_model("imagenet_lite0")
    assert given.onnx.reduce_range is True and given.onnx.weight_type == "int8"  # what is given wins
    default = ConvertConfig(model="clothes_lite0").for_model("clothes_lite0").onnx  # no override: the default
    assert default.reduce_range is True and default.weight_type == "int8"


def test_bounds_live_in_the_field_are_shown_in_help_and_checked_in_one_place():
    @dataclass
    class Config:
        rate: float = option(0.5, "how fast", bounds=(0, 1))
        fps: float | None = option(help="frames per second", bounds=(0, 1000), open_low=True)
        count: int = option(3, "how many", bounds=(1, None))
        sizes: tuple[int, ...] = option((2,), "sizes", bounds=(1, 8))

    parser = ArgumentParser(prog="demo")
    add_options(parser, Config)
    text = parser.format_help()
    assert "how fast [0..1]" in text and "[(0, 1000]]" in text and "how many [>= 1]" in text
    check_ranges(Config())
    check_ranges(Config(fps=None, rate=1.0, sizes=(1, 8)))
    for bad, message in (
        (dict(rate=1.5), "--rate must be 0..1, got 1.5"),
        (dict(fps=0.0), r"--fps must be \(0, 1000\]"),
        (dict(fps=float("nan")), "--fps must be"),
        (dict(rate=float("inf")), "--rate must be"),
        (dict(count=0), "--count must be >= 1"),
        (dict(sizes=(2, 9)), "--sizes must be 1..8, got 9"),
    ):
        with pytest.raises(EdgeError, match=message):
            check_ranges(Config(**bad))
