"""The registry: one entry per model, with the tutorials' shapes and parameter counts."""

from __future__ import annotations

import pytest

from edge_runtime.errors import EdgeError
from train import architectures, models


def test_registry_lists_every_model_with_an_input_contract():
    assert set(models.REGISTRY) >= {
        "mlp128",
        "mlp512",
        "mlp256_64",
        "seed_cnn",
        "seed_cnn_tutorial",
        "edge_cnn",
        "camera_cnn",
    }
    assert models.get("edge_cnn").input.shape == (1, 28, 28, 1)
    camera = models.get("camera_cnn").input
    assert camera.shape == (1, 128, 128, 3) and camera.color_order == "RGB"
    assert models.DEFAULT_MODEL == "edge_cnn"


def test_unknown_model_suggests_the_closest():
    with pytest.raises(EdgeError, match="did you mean 'edge_cnn'"):
        models.get("edge_cn")


def test_tutorial_parameter_counts():
    import keras

    assert models.get("seed_cnn").build().count_params() == 843_658
    assert models.get("seed_cnn_tutorial").build().count_params() == 843_658
    assert models.get("mlp128").build().count_params() == 101_770
    layers = models.get("seed_cnn_tutorial").build().layers
    conv = [layer for layer in layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(layer.activation.__name__ == "linear" for layer in conv)  # exactly as the tutorial wrote it


def test_normalization_is_in_the_graph_and_no_random_layers():
    import keras

    for name, spec in models.REGISTRY.items():
        model = models.build_model(spec, 10, width=0.25, backbone=spec.recipe.get("backbone"))
        assert isinstance(model.layers[1], keras.layers.Rescaling), name
        assert not [layer for layer in model.layers if "Random" in type(layer).__name__], name
        assert model.output_shape == (None, 10)


def test_edge_cnn_is_smaller_than_seed_cnn_and_position_tolerant():
    # Latency, the axis that matters, is measured by the benchmark; MACs alone do not decide it
    # (edge_cnn has more MACs than seed_cnn and runs faster: full convs, no 1600x512 dense).
    import keras

    edge = models.get("edge_cnn").build()
    seed = models.get("seed_cnn").build()
    assert edge.count_params() < seed.count_params() / 4
    assert architectures.count_macs(seed) == 26 * 26 * 32 * 9 + 11 * 11 * 64 * 9 * 32 + 1600 * 512 + 512 * 10
    # Global pooling, not a flattened map: no weight is tied to where a feature sits.
    kinds = [type(layer) for layer in edge.layers]
    assert keras.layers.GlobalAveragePooling2D in kinds and keras.layers.Flatten not in kinds
    # Each unit of the last feature map sees (nearly) the whole 28x28 image: 27x27 pixels.
    field, jump = 1, 1
    for layer in edge.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            field += (layer.kernel_size[0] - 1) * jump
            jump *= layer.strides[0]
    assert field == 27


def test_fashion_cnns_train_on_shifted_and_tilted_garments():
    from train.config import TrainConfig

    for name in ("edge_cnn", "seed_cnn"):
        config = TrainConfig(name).resolved()
        assert config.augment == "framing" and config.max_shift >= 5 and config.max_rotation >= 10, name
    tutorial = TrainConfig("seed_cnn_tutorial").resolved()  # as written: no augmentation, the tutorial's stopping rule
    assert tutorial.augment == "none" and tutorial.patience == 10 and tutorial.epochs >= 50


def test_recipe_defaults_come_from_the_registry_and_options_override_them():
    from train.config import ConfigError, TrainConfig

    mlp = TrainConfig("mlp128").resolved()
    assert (mlp.epochs, mlp.schedule, mlp.warmup_epochs, mlp.batch_size) == (5, "cosine", 0.0, 32)
    edge = TrainConfig("edge_cnn").resolved()
    assert edge.warmup_epochs == 1.0 and edge.label_smoothing == 0.1
    assert TrainConfig("mlp128", warmup_epochs=2.0).resolved().warmup_epochs == 2.0
    with pytest.raises(ConfigError, match="warmup"):
        TrainConfig("mlp128", warmup_epochs=-1.0).resolved()
