"""Known-value tests of bev_mtl_ros.model.losses (numbers computed by hand in the comments)."""

import math

import pytest
import torch

from bev_mtl_ros.model.losses import (MultiTaskLoss, UncertaintyWeighting, drivable_loss,
                                      upsample_to_label,
                                      gaussian_focal_loss, gather_at_indices,
                                      lovasz_softmax_loss, masked_l1_loss, semantic_loss)

LN2 = math.log(2.0)


def test_focal_loss_hand_computed():
    # cells: (y=1, x=0 -> p=.5), (y=.5, x=0 -> p=.5), (y=0, x=ln3 -> p=.75)
    # 1: -(1-.5)^2 log .5            = 0.25 ln2
    # 2: -(1-.5)^4 .5^2 log(1-.5)    = 0.015625 ln2
    # 3: -(1-0)^4 .75^2 log(.25)     = 0.5625 * 2 ln2 = 1.125 ln2
    # one positive -> divide by 1
    logits = torch.tensor([0.0, 0.0, math.log(3.0)]).view(1, 1, 1, 3)
    target = torch.tensor([1.0, 0.5, 0.0]).view(1, 1, 1, 3)
    loss = gaussian_focal_loss(logits, target)
    assert loss.item() == pytest.approx(1.390625 * LN2, rel=1e-5)


def test_focal_loss_normalised_by_positives_and_zero_positives():
    logits = torch.zeros(1, 1, 1, 2)
    two_pos = gaussian_focal_loss(logits, torch.ones(1, 1, 1, 2))
    assert two_pos.item() == pytest.approx(0.25 * LN2, rel=1e-5)  # (2 * .25 ln2) / 2
    no_pos = gaussian_focal_loss(logits, torch.zeros(1, 1, 1, 2))
    assert no_pos.item() == pytest.approx(2 * 0.25 * LN2, rel=1e-5)  # 2 * (.5^2 ln2) / max(1, 0)


def test_focal_loss_is_stable_for_extreme_logits():
    logits = torch.tensor([-200.0, 200.0, 200.0]).view(1, 1, 1, 3).requires_grad_()
    target = torch.tensor([1.0, 0.0, 0.9]).view(1, 1, 1, 3)
    loss = gaussian_focal_loss(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    # positive at -200: (1-0)^2 * 200 ; negative at +200 with y=0: 1 * 1 * 200 ; y=.9: .1^4 * 200
    assert loss.item() == pytest.approx(200 + 200 + 1e-4 * 200, rel=1e-4)


def test_focal_loss_shape_mismatch_raises():
    with pytest.raises(ValueError, match="heatmap"):
        gaussian_focal_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 3))


def test_gather_and_masked_l1():
    pred = torch.arange(8, dtype=torch.float32).view(1, 2, 2, 2)  # ch0: 0..3, ch1: 4..7
    idx = torch.tensor([[3, 0]])
    assert gather_at_indices(pred, idx).tolist() == [[[3.0, 7.0], [0.0, 4.0]]]
    mask = torch.tensor([[1, 0]])
    target = torch.tensor([[[1.0, 10.0], [100.0, 100.0]]])  # second row is padding
    # |3-1| + |7-10| = 5, one object
    assert masked_l1_loss(pred, idx, mask, target).item() == pytest.approx(5.0)
    mask2 = torch.tensor([[1, 1]])
    target2 = torch.tensor([[[1.0, 10.0], [0.5, 4.0]]])
    # (2 + 3 + 0.5 + 0) / 2
    assert masked_l1_loss(pred, idx, mask2, target2).item() == pytest.approx(2.75)
    with pytest.raises(IndexError):
        gather_at_indices(pred, torch.tensor([[4]]))


def test_masked_l1_padding_nan_does_not_leak():
    pred = torch.zeros(1, 1, 2, 2, requires_grad=True)
    target = torch.tensor([[[1.0], [float("nan")]]])
    loss = masked_l1_loss(pred, torch.tensor([[0, 1]]), torch.tensor([[1.0, 0.0]]), target)
    loss.backward()
    assert loss.item() == pytest.approx(1.0) and torch.isfinite(pred.grad).all()


def test_drivable_bce_dice_and_ignore():
    logits = torch.zeros(1, 1, 1, 3)
    label = torch.tensor([[[0, 1, 255]]], dtype=torch.uint8)
    assert drivable_loss(logits, label).item() == pytest.approx(LN2, rel=1e-6)
    # Dice on valid cells: p = .5, .5 ; y = 0, 1 -> 1 - (2*.5 + 1)/(1 + 1 + 1) = 1/3
    assert (drivable_loss(logits, label, dice_weight=1.0).item()
            == pytest.approx(LN2 + 1 / 3, rel=1e-6))
    # ignored cell's logit must not matter
    logits2 = torch.tensor([0.0, 0.0, 50.0]).view(1, 1, 1, 3)
    assert drivable_loss(logits2, label).item() == pytest.approx(LN2, rel=1e-6)
    all_ignored = drivable_loss(logits, torch.full((1, 1, 3), 255, dtype=torch.uint8))
    assert all_ignored.item() == 0.0


def test_semantic_ce_with_ignore():
    logits = torch.zeros(1, 2, 1, 3)
    logits[0, 1, 0, 1] = math.log(3.0)  # pixel 1: p(class 1) = 3/4
    label = torch.tensor([[[0, 1, 255]]])
    # pixel 0: -log .5 = ln2 ; pixel 1: -log .75 ; mean over 2 valid pixels
    expected = (LN2 - math.log(0.75)) / 2
    assert semantic_loss(logits, label).item() == pytest.approx(expected, rel=1e-6)
    assert semantic_loss(logits, torch.full((1, 1, 3), 255)).item() == 0.0


def test_semantic_logits_at_a_stride_are_upsampled_to_the_label():
    """contract.semantic_stride: the loss sees the logits bilinearly upsampled to the label."""
    torch.manual_seed(0)
    small = torch.randn(2, 3, 4, 6)
    label = torch.randint(0, 3, (2, 8, 12))
    up = upsample_to_label(small, label)
    assert up.shape == (2, 3, 8, 12)
    # align_corners=False x2: output pixel 1 sits at source 0.25 -> 0.75 s0 + 0.25 s1
    assert torch.allclose(up[:, :, 0, 1], 0.75 * small[:, :, 0, 0] + 0.25 * small[:, :, 0, 1])
    assert upsample_to_label(up, label) is up                       # same size: untouched
    odd = torch.randn(2, 3, 5, 6)                                   # not a stride of the label
    assert upsample_to_label(odd, label) is odd
    with pytest.raises(ValueError, match="semantic logits"):
        semantic_loss(odd, label)
    loss = MultiTaskLoss()
    tasks, _ = loss.task_losses({"semantic": small}, {"semantic": label})
    assert tasks["semantic"].item() == pytest.approx(semantic_loss(up, label).item(), rel=1e-6)


def test_uncertainty_weighting():
    uw = UncertaintyWeighting(("a", "b"))
    la, lb = torch.tensor(2.0), torch.tensor(3.0)
    assert uw({"a": la, "b": lb}).item() == pytest.approx(5.0)
    with torch.no_grad():
        uw.log_vars.copy_(torch.tensor([LN2, 0.0]))
    # exp(-ln2)*2 + ln2 + 3 + 0
    assert uw({"a": la, "b": lb}).item() == pytest.approx(1.0 + LN2 + 3.0, rel=1e-6)
    assert uw.weights()["a"] == pytest.approx(0.5)


def _tiny_outputs_targets():
    outputs = {
        "heatmap": torch.zeros(1, 1, 2, 2), "offset": torch.zeros(1, 2, 2, 2),
        "z": torch.zeros(1, 1, 2, 2),
        "size": torch.zeros(1, 3, 2, 2), "rot": torch.zeros(1, 2, 2, 2),
        "drivable": torch.zeros(1, 1, 1, 2), "semantic": torch.zeros(1, 2, 1, 2),
    }
    hm = torch.zeros(1, 1, 2, 2)
    hm[0, 0, 1, 1] = 1.0
    targets = {
        "heatmap": hm, "indices": torch.tensor([[3]]), "mask": torch.tensor([[1]]),
        "offset": torch.tensor([[[0.5, 0.5]]]), "z": torch.tensor([[[-1.0]]]),
        "size": torch.tensor([[[1.0, 0.5, 0.5]]]), "rot": torch.tensor([[[0.0, 1.0]]]),
        "drivable": torch.tensor([[[0, 1]]]), "semantic": torch.tensor([[[0, 255]]]),
    }
    return outputs, targets


def test_multitask_loss_total_and_terms():
    outputs, targets = _tiny_outputs_targets()
    loss_fn = MultiTaskLoss(task_weights={"drivable": 2.0, "semantic": 0.5})
    total, terms = loss_fn(outputs, targets)
    # heat map: 1 positive (.25 ln2) + 3 negatives (.25 ln2 each) = ln2
    assert terms["heatmap"] == pytest.approx(LN2, rel=1e-5)
    assert terms["offset"] == pytest.approx(1.0) and terms["z"] == pytest.approx(1.0)
    assert terms["size"] == pytest.approx(2.0) and terms["rot"] == pytest.approx(1.0)
    det = LN2 + 0.25 * (1 + 1 + 2 + 1)
    assert terms["detection"] == pytest.approx(det, rel=1e-5)
    assert terms["drivable"] == pytest.approx(LN2, rel=1e-5)
    assert terms["semantic"] == pytest.approx(LN2, rel=1e-5)
    assert total.item() == pytest.approx(det + 2 * LN2 + 0.5 * LN2, rel=1e-5)
    assert terms["total"] == pytest.approx(total.item())


def test_multitask_uncertainty_has_parameters_and_gradients():
    outputs, targets = _tiny_outputs_targets()
    loss_fn = MultiTaskLoss(uncertainty=True)
    params = list(loss_fn.parameters())
    assert len(params) == 1 and params[0].shape == (3,)
    total, terms = loss_fn(outputs, targets)
    total.backward()
    # d/ds (exp(-s) L + s) at s=0 = 1 - L
    expected = torch.tensor([1 - terms["detection"], 1 - terms["drivable"], 1 - terms["semantic"]])
    assert torch.allclose(params[0].grad, expected, atol=1e-5)
    assert terms["w_detection"] == pytest.approx(1.0)


def test_multitask_rejects_unknown_weights():
    with pytest.raises(ValueError, match="task_weights"):
        MultiTaskLoss(task_weights={"depth": 1.0})


def test_enet_class_weights_known_answer():
    from bev_mtl_ros.model.losses import enet_class_weights
    w = enet_class_weights([30.0, 70.0, 0.0], c=1.02)
    expect = [1 / math.log(1.32), 1 / math.log(1.72), 1 / math.log(1.02)]
    assert w.dtype == torch.float32
    assert torch.allclose(w, torch.tensor(expect), atol=1e-5)
    assert torch.allclose(enet_class_weights([3, 7, 0]), w)          # only the shares count
    for bad in ([0.0, 0.0], [-1.0, 2.0]):
        with pytest.raises(ValueError):
            enet_class_weights(bad)
    with pytest.raises(ValueError):
        enet_class_weights([1.0], c=1.0)


def test_class_weights_change_the_semantic_loss():
    from bev_mtl_ros.model.losses import semantic_loss
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 0, 0, 1] = 2.0                    # pixel 1 predicts class 0, pixel 0 is uniform
    label = torch.tensor([[[0, 1]]])
    per_pixel = torch.tensor([math.log(2.0), math.log(1 + math.exp(2.0))])
    w = torch.tensor([1.0, 3.0])
    weighted = semantic_loss(logits, label, class_weights=w)
    assert torch.isclose(weighted, (per_pixel * w).sum() / w.sum())   # F.cross_entropy's mean
    assert torch.isclose(semantic_loss(logits, label), per_pixel.mean())


def _one_hot_logits(pred: torch.Tensor, classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(pred, classes).permute(0, 3, 1, 2).float() * 50.0


def test_lovasz_hand_computed_one_hot():
    # label 0 0 1 1, prediction 0 1 1 1: IoU(0) = 1/2, IoU(1) = 2/3 -> mean (1/2 + 1/3) / 2
    label = torch.tensor([[[0, 0, 1, 1]]])
    logits = _one_hot_logits(torch.tensor([[[0, 1, 1, 1]]]), 3)
    assert lovasz_softmax_loss(logits, label).item() == pytest.approx(5.0 / 12.0, abs=1e-6)


def test_lovasz_equals_mean_jaccard_loss_for_hard_predictions():
    # the Lovász extension is exact at the vertices: one-hot probabilities give 1 - IoU
    g = torch.Generator().manual_seed(3)
    label = torch.randint(0, 5, (2, 12, 16), generator=g)
    label[0, :3] = 255
    pred = torch.randint(0, 6, (2, 12, 16), generator=g)
    valid = label != 255
    jaccard = []
    for c in torch.unique(label[valid]):
        a, b = (label == c) & valid, (pred == c) & valid
        jaccard.append(1.0 - (a & b).sum().item() / (a | b).sum().item())
    loss = lovasz_softmax_loss(_one_hot_logits(pred, 7), label)
    assert loss.item() == pytest.approx(sum(jaccard) / len(jaccard), abs=1e-6)
    assert lovasz_softmax_loss(_one_hot_logits(label.clamp(max=6), 7), label).item() == \
        pytest.approx(0.0, abs=1e-6)


def test_lovasz_gradient_ignore_stride_and_errors():
    logits = torch.zeros(1, 3, 4, 4, requires_grad=True)
    label = torch.full((1, 4, 4), 255)
    empty = lovasz_softmax_loss(logits, label)
    empty.backward()
    assert empty.item() == 0.0 and logits.grad is not None
    label[0, ::2, ::2] = 1                     # only the pixels a stride of 2 keeps
    loss = lovasz_softmax_loss(logits, label, stride=2)
    assert loss.item() == pytest.approx(2.0 / 3.0, abs=1e-6)  # every error 2/3, Jaccard 0 -> 1
    logits.grad = None
    loss.backward()
    assert logits.grad[0, 1, 0, 0] < 0         # raising the true class lowers the loss
    with pytest.raises(ValueError):
        lovasz_softmax_loss(logits, label[:, :2])
    with pytest.raises(ValueError):
        lovasz_softmax_loss(logits, label, stride=0)
