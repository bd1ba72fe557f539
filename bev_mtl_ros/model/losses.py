"""Training losses of the multi-task network.

Tasks: CenterPoint detection, BEV drivable area, image semantics.

All losses take the network's *raw* outputs (logits, see ``model/network.py``) and the targets
built by ``runtime/targets.py`` (detection) and ``train/dataset.py`` (drivable, semantic labels).

Detection (CenterPoint, Yin et al. 2021, "Center-based 3D Object Detection and Tracking")
    * heat map: penalty-reduced pixel-wise focal loss of CornerNet (Law & Deng 2018, Eq. 1) as used
      by CenterNet (Zhou et al. 2019, "Objects as Points", Eq. 1), alpha = 2, beta = 4, normalised
      by the number of objects (cells whose target equals 1). Computed from logits with
      ``logsigmoid`` so that it never takes log(0).
    * regression: L1 on sub-cell offset (cells), z (m), log size (log m) and (sin, cos) yaw,
      gathered at the object-centre cells (``indices``) and masked by ``mask``; summed over
      channels and divided by the number of objects (CenterPoint's ``RegLoss``).
Drivable area: binary cross-entropy with logits over cells whose label is 0 or 1 (255 = ignore,
    e.g. cells without lidar evidence), optionally plus a soft Dice loss (Milletari et al. 2016,
    V-Net) over the same cells.
Semantics: cross-entropy over pixels with ignore index 255, mean over non-ignored pixels
    (0 when every pixel is ignored, e.g. a frame without a camera image). The Lovász-softmax loss
    (Berman et al. 2018, :func:`lovasz_softmax_loss`) was measured against it (models/README.md)
    and is kept for recipe comparisons; the training recipe does not use it.

Task weighting: fixed weights, or the homoscedastic-uncertainty weighting of Kendall, Gal & Cipolla
2018 ("Multi-Task Learning Using Uncertainty to Weigh Losses", CVPR), in the common log-variance
form  L = sum_t exp(-s_t) * L_t + s_t  with one learnable s_t = log sigma_t^2 per task
(:class:`UncertaintyWeighting`).

Target dict consumed by :class:`MultiTaskLoss` (B = batch, K classes, M = max objects):
    heatmap  (B, K, Hb, Wb) float32 in [0, 1], 1 exactly at object centres
    indices  (B, M) int64 flat index iy * Wb + ix into the detection grid
    mask     (B, M) bool / float32, 1 for real objects
    offset   (B, M, 2) float32 sub-cell offset in cells [0, 1)
    z        (B, M, 1) float32 box centre z in metres
    size     (B, M, 3) float32 log(length, width, height) in log metres
    rot      (B, M, 2) float32 (sin yaw, cos yaw)
    drivable (B, grid_h, grid_w) uint8 / int64 {0, 1, 255}
    semantic (B, Hi, Wi) int64 class ids, 255 = ignore
    det_valid (B,) float32, optional: 0 for items without lidar / box labels (camera-only real
             frames); the detection loss is computed over the other items only
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE_INDEX = 255

#: loss terms of the detection head and the output/target key each one reads
REGRESSION_TERMS = ("offset", "z", "size", "rot")
#: tasks of the network (the units of the uncertainty weighting)
TASKS = ("detection", "drivable", "semantic")


def gaussian_focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0,
                        beta: float = 4.0) -> torch.Tensor:
    """Penalty-reduced focal loss on a Gaussian heat map (CornerNet Eq. 1 / CenterNet Eq. 1).

    With p = sigmoid(logits) and y = target:
        y == 1:  -(1 - p)^alpha * log(p)
        y <  1:  -(1 - y)^beta * p^alpha * log(1 - p)
    summed over all cells and divided by max(1, number of cells with y == 1).

    Args:
        logits: (B, K, H, W) raw heat-map logits (any shape works, matched to ``target``).
        target: same shape, float in [0, 1]; object centres are exactly 1.
        alpha, beta: focusing exponents (2 and 4 in the papers).
    Returns:
        scalar tensor. Raises ValueError when the shapes differ.
    """
    if logits.shape != target.shape:
        raise ValueError(f"heatmap logits {tuple(logits.shape)} and target {tuple(target.shape)} "
                         "differ")
    target = target.to(logits.dtype)
    log_p = F.logsigmoid(logits)
    log_1mp = F.logsigmoid(-logits)
    p = torch.exp(log_p)
    pos = target >= 1.0
    pos_loss = -((1.0 - p) ** alpha) * log_p
    neg_loss = -((1.0 - target) ** beta) * (p ** alpha) * log_1mp
    loss = torch.where(pos, pos_loss, neg_loss).sum()
    num_pos = pos.sum().clamp(min=1).to(logits.dtype)
    return loss / num_pos


def gather_at_indices(feature: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Gather per-object vectors from a dense map.

    Args:
        feature: (B, C, H, W) map.
        indices: (B, M) int64 flat indices iy * W + ix (values outside [0, H*W) raise IndexError).
    Returns:
        (B, M, C) values at those cells.
    """
    b, c, h, w = feature.shape
    idx = indices.long()
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= h * w):
        raise IndexError(f"target indices outside the {h}x{w} detection grid")
    flat = feature.reshape(b, c, h * w)
    out = torch.gather(flat, 2, idx.unsqueeze(1).expand(b, c, idx.shape[1]))
    return out.permute(0, 2, 1)


def masked_l1_loss(pred_map: torch.Tensor, indices: torch.Tensor, mask: torch.Tensor,
                   target: torch.Tensor) -> torch.Tensor:
    """Compute L1 between a dense prediction gathered at object cells and per-object targets.

    CenterPoint's RegLoss.

    Args:
        pred_map: (B, C, H, W) prediction.
        indices: (B, M) int64 flat cell index of each object.
        mask: (B, M) bool/float, 1 for real objects (padding rows are 0).
        target: (B, M, C) targets.
    Returns:
        sum over objects and channels of |pred - target| divided by max(1, number of objects).
    """
    pred = gather_at_indices(pred_map, indices)
    if pred.shape != target.shape:
        raise ValueError(f"regression prediction {tuple(pred.shape)} vs target "
                         f"{tuple(target.shape)}")
    m = mask.to(pred.dtype).unsqueeze(-1)
    # where() keeps NaN/inf from padding rows out of the gradient
    diff = torch.where(m > 0, (pred - target.to(pred.dtype)).abs(), torch.zeros_like(pred))
    return diff.sum() / m.sum().clamp(min=1.0)


def drivable_loss(logits: torch.Tensor, label: torch.Tensor, dice_weight: float = 0.0,
                  ignore_index: int = IGNORE_INDEX, eps: float = 1.0) -> torch.Tensor:
    """BCE (+ ``dice_weight`` * soft Dice) on the BEV drivable area, ignoring cells labelled 255.

    Args:
        logits: (B, 1, H, W) or (B, H, W) raw logits.
        label: (B, H, W) integer {0, 1, ignore_index}.
        dice_weight: weight of the soft Dice term 1 - (2 sum(p y) + eps) / (sum p + sum y + eps),
            computed over the non-ignored cells of the whole batch (V-Net, Milletari et al. 2016).
    Returns:
        scalar; 0 (with a gradient path) when every cell is ignored.
    """
    if logits.dim() == 4:
        logits = logits[:, 0]
    if logits.shape != label.shape:
        raise ValueError(f"drivable logits {tuple(logits.shape)} vs label {tuple(label.shape)}")
    valid = label != ignore_index
    y = (label == 1).to(logits.dtype)
    n = valid.sum()
    if int(n) == 0:
        return logits.sum() * 0.0
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    loss = (bce * valid).sum() / n
    if dice_weight > 0:
        p = torch.sigmoid(logits) * valid
        yv = y * valid
        dice = 1.0 - (2.0 * (p * yv).sum() + eps) / (p.sum() + yv.sum() + eps)
        loss = loss + dice_weight * dice
    return loss


def upsample_to_label(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Semantic logits at a model's ``contract.semantic_stride`` brought to the label's size.

    Args:
        logits: (B, S, h, w) logits; label: (B, H, W) class ids.
    Returns:
        ``logits`` unchanged when (h, w) == (H, W); when H = k h and W = k w for k in 2 or 4,
        the logits bilinearly upsampled (align_corners=False, as the FPN head upsamples) to
        (B, S, H, W); any other size unchanged, so that :func:`semantic_loss` names the mismatch.
    """
    h, w = int(logits.shape[-2]), int(logits.shape[-1])
    big_h, big_w = int(label.shape[-2]), int(label.shape[-1])
    if (h, w) != (big_h, big_w) and any((h * k, w * k) == (big_h, big_w) for k in (2, 4)):
        return F.interpolate(logits, size=(big_h, big_w), mode="bilinear", align_corners=False)
    return logits


def semantic_loss(logits: torch.Tensor, label: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                  class_weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Pixel-wise cross-entropy with an ignore index, mean over non-ignored pixels.

    Args:
        logits: (B, S, H, W) raw class logits.
        label: (B, H, W) int64 class ids, ``ignore_index`` = not labelled.
        class_weights: optional (S,) weights (then the mean is weighted, as in
        ``F.cross_entropy``).
    Returns:
        scalar; 0 (with a gradient path) when every pixel is ignored (F.cross_entropy would give
        NaN).
    """
    if logits.shape[0] != label.shape[0] or logits.shape[2:] != label.shape[1:]:
        raise ValueError(f"semantic logits {tuple(logits.shape)} vs label {tuple(label.shape)}")
    label = label.long()
    if not bool((label != ignore_index).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, label, weight=class_weights, ignore_index=ignore_index)


def lovasz_softmax_loss(logits: torch.Tensor, label: torch.Tensor,
                        ignore_index: int = IGNORE_INDEX, stride: int = 1) -> torch.Tensor:
    """Lovász-softmax loss: a convex surrogate of 1 − IoU, averaged over the classes present.

    Berman, Rannen Triki & Blaschko, "The Lovász-Softmax loss", CVPR 2018, Eq. 8-12 and Alg. 1:
    for each class c present in the (batch's) label, the errors e_i = |[y_i = c] − p_i,c| are
    sorted in decreasing order and dotted with the gradient of the Jaccard loss along that order
    (the Lovász extension of the set function 1 − IoU). With one-hot probabilities the loss is
    exactly the mean over present classes of 1 − IoU of the predicted masks.

    Args:
        logits: (B, S, H, W) raw class logits.
        label: (B, H, W) int64 class ids, ``ignore_index`` = not labelled.
        stride: keep every ``stride``-th pixel in each direction (>= 1): the sort over all
            pixels is the cost, and a stride of 2 cuts it fourfold.
    Returns:
        scalar; 0 (with a gradient path) when every pixel is ignored.
    Raises:
        ValueError for mismatched shapes or a stride < 1.
    """
    if logits.shape[0] != label.shape[0] or logits.shape[2:] != label.shape[1:]:
        raise ValueError(f"semantic logits {tuple(logits.shape)} vs label {tuple(label.shape)}")
    if int(stride) < 1:
        raise ValueError(f"lovasz_softmax_loss: stride must be >= 1, got {stride}")
    probs = logits[:, :, ::stride, ::stride].softmax(dim=1)
    y = label[:, ::stride, ::stride].reshape(-1).long()
    p = probs.permute(0, 2, 3, 1).reshape(y.numel(), -1)
    keep = y != ignore_index
    if not bool(keep.any()):
        return logits.sum() * 0.0
    p, y = p[keep], y[keep]
    present = torch.unique(y)                                        # (K,)
    fg = (y[None, :] == present[:, None]).to(p.dtype)                # (K, N)
    errors = (fg - p[:, present].t()).abs()
    errors, order = errors.sort(dim=1, descending=True)
    fg = fg.gather(1, order)
    positives = fg.sum(dim=1, keepdim=True)
    jaccard = 1.0 - (positives - fg.cumsum(dim=1)) / (positives + (1.0 - fg).cumsum(dim=1))
    grad = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)
    return (errors * grad).sum(dim=1).mean()


def enet_class_weights(pixel_counts: Sequence[float], c: float = 1.02) -> torch.Tensor:
    """Class weights of ENet (Paszke et al. 2016, "ENet", Sec. 5.2): w_k = 1 / ln(c + p_k).

    p_k is class k's share of the labelled pixels. ``c`` bounds the weights to (1 / ln(1 + c),
    1 / ln(c)]: 1.02 (the paper's) gives 50.5 for an absent class and 3.6 for a class on 30 % of
    the pixels; a larger ``c`` flattens them (1.10: 10.5 vs 3.0).

    Args:
        pixel_counts: (S,) non-negative labelled-pixel counts per class (any unit).
        c: the constant above, > 1.
    Returns:
        (S,) float32 weights for :func:`semantic_loss` / ``F.cross_entropy``.
    Raises:
        ValueError when ``c`` <= 1, a count is negative or all counts are 0.
    """
    counts = torch.as_tensor(pixel_counts, dtype=torch.float64)
    if c <= 1.0:
        raise ValueError(f"enet_class_weights: c must be > 1, got {c}")
    if bool((counts < 0).any()) or float(counts.sum()) <= 0.0:
        raise ValueError("enet_class_weights: counts must be >= 0 with a positive sum")
    return (1.0 / torch.log(c + counts / counts.sum())).float()


class UncertaintyWeighting(nn.Module):
    """Learned homoscedastic-uncertainty task weighting (Kendall, Gal & Cipolla, CVPR 2018).

    One learnable log-variance s_t per task; combined loss = sum_t exp(-s_t) * L_t + s_t.
    (The paper's factor 1/2 for regression tasks is folded into s_t, as most implementations do.)
    ``log_vars`` start at ``init`` (0 -> every weight 1).
    """

    def __init__(self, tasks: Sequence[str] = TASKS, init: float = 0.0):
        super().__init__()
        self.tasks = tuple(tasks)
        self.log_vars = nn.Parameter(torch.full((len(self.tasks),), float(init)))

    def forward(self, task_losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """task_losses: {task: scalar}; tasks missing from the mapping contribute nothing."""
        total = self.log_vars.sum() * 0.0
        for i, t in enumerate(self.tasks):
            if t in task_losses:
                total = total + torch.exp(-self.log_vars[i]) * task_losses[t] + self.log_vars[i]
        return total

    def weights(self) -> Dict[str, float]:
        """Return the current effective weights exp(-s_t) per task."""
        return {t: float(torch.exp(-v)) for t, v in zip(self.tasks, self.log_vars.detach())}


def _detection_subset(outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]):
    """Keep only the batch items with ``targets["det_valid"]`` (B,) > 0.5 in the detection keys.

    The detection keys of outputs/targets are the heat map and regression maps, indices, mask and
    regression targets; other keys pass unchanged. Without ``det_valid`` everything passes. When
    no item is valid the heat map is dropped from both dicts, so the detection task is skipped.
    """
    if "det_valid" not in targets:
        return outputs, targets
    keep = targets["det_valid"] > 0.5
    if bool(keep.all()):
        return outputs, targets
    det_keys = ("heatmap", "indices", "mask") + REGRESSION_TERMS
    if not bool(keep.any()):
        return ({k: v for k, v in outputs.items() if k != "heatmap"},
                {k: v for k, v in targets.items() if k != "heatmap"})
    return ({k: (v[keep] if k in det_keys else v) for k, v in outputs.items()},
            {k: (v[keep] if k in det_keys else v) for k, v in targets.items()})


class MultiTaskLoss(nn.Module):
    """Total training loss of :class:`~bev_mtl_ros.model.network.BevMultiTaskNet`.

    Per-task losses:
        detection = heatmap_weight * focal + sum_r reg_weights[r] * L1_r   (r in offset, z, size,
        rot) drivable  = BCE (+ dice_weight * Dice)
        semantic  = CE (ignore 255), on logits upsampled to the label (:func:`upsample_to_label`)
    Combined with fixed ``task_weights`` ({detection, drivable, semantic}) or, with
    ``uncertainty=True``, by :class:`UncertaintyWeighting` (its parameters must then be given to
    the optimiser: they are parameters of this module).

    forward(outputs, targets) -> (total scalar, dict of detached float terms: heatmap, offset, z,
    size, rot, detection, drivable, semantic, total, and w_<task> when uncertainty weighting is
    on). Outputs or targets missing a task's keys skip that task.
    """

    def __init__(self, task_weights: Optional[Mapping[str, float]] = None,
                 reg_weights: Optional[Mapping[str, float]] = None, heatmap_weight: float = 1.0,
                 dice_weight: float = 0.0, uncertainty: bool = False, focal_alpha: float = 2.0,
                 focal_beta: float = 4.0,
                 semantic_class_weights: Optional[Sequence[float]] = None):
        super().__init__()
        self.task_weights = {t: 1.0 for t in TASKS}
        if task_weights:
            unknown = set(task_weights) - set(TASKS)
            if unknown:
                raise ValueError(f"unknown task_weights keys {sorted(unknown)}; expected {TASKS}")
            self.task_weights.update({k: float(v) for k, v in task_weights.items()})
        # CenterPoint's code weights: offsets/z/size 1.0, rotation 1.0; total regression weight
        # 0.25
        self.reg_weights = {"offset": 0.25, "z": 0.25, "size": 0.25, "rot": 0.25}
        if reg_weights:
            unknown = set(reg_weights) - set(REGRESSION_TERMS)
            if unknown:
                raise ValueError(f"unknown reg_weights keys {sorted(unknown)}; expected "
                                 f"{REGRESSION_TERMS}")
            self.reg_weights.update({k: float(v) for k, v in reg_weights.items()})
        self.heatmap_weight = float(heatmap_weight)
        self.dice_weight = float(dice_weight)
        self.focal_alpha, self.focal_beta = float(focal_alpha), float(focal_beta)
        self.uncertainty = UncertaintyWeighting(TASKS) if uncertainty else None
        if semantic_class_weights is not None:
            self.register_buffer("semantic_class_weights",
                                 torch.as_tensor(semantic_class_weights, dtype=torch.float32))
        else:
            self.semantic_class_weights = None

    def task_losses(self, outputs: Mapping[str, torch.Tensor],
                    targets: Mapping[str, torch.Tensor]):
        """Per-task losses and the individual terms: returns (tasks dict, terms dict)."""
        tasks: Dict[str, torch.Tensor] = {}
        terms: Dict[str, torch.Tensor] = {}
        if "heatmap" in outputs and "heatmap" in targets:
            outputs, targets = _detection_subset(outputs, targets)
        if "heatmap" in outputs and "heatmap" in targets:
            hm = gaussian_focal_loss(outputs["heatmap"], targets["heatmap"], self.focal_alpha,
                                     self.focal_beta)
            terms["heatmap"] = hm
            det = self.heatmap_weight * hm
            for r in REGRESSION_TERMS:
                if r in outputs and r in targets and "indices" in targets:
                    lr = masked_l1_loss(outputs[r], targets["indices"], targets["mask"],
                                        targets[r])
                    terms[r] = lr
                    det = det + self.reg_weights[r] * lr
            tasks["detection"] = det
        if "drivable" in outputs and "drivable" in targets:
            tasks["drivable"] = drivable_loss(outputs["drivable"], targets["drivable"],
                                              self.dice_weight)
        if "semantic" in outputs and "semantic" in targets:
            tasks["semantic"] = semantic_loss(
                upsample_to_label(outputs["semantic"], targets["semantic"]),
                targets["semantic"], class_weights=self.semantic_class_weights)
        return tasks, terms

    def forward(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]):
        tasks, terms = self.task_losses(outputs, targets)
        if not tasks:
            raise ValueError("no task has both an output and a target: nothing to train")
        if self.uncertainty is not None:
            total = self.uncertainty(tasks)
        else:
            total = sum(self.task_weights[t] * v for t, v in tasks.items())
        log = {k: float(v.detach()) for k, v in terms.items()}
        log.update({k: float(v.detach()) for k, v in tasks.items()})
        log["total"] = float(total.detach())
        if self.uncertainty is not None:
            log.update({f"w_{k}": v for k, v in self.uncertainty.weights().items()})
        return total, log
