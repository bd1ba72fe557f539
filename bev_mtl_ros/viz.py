"""Renderings of the package's outputs with OpenCV: bird's-eye views, camera views, semantics.

Used by ``bev-mtl-ros demo`` (:func:`render_bev`, :func:`render_camera`: one PNG each per
replayed frame) and ``bev-mtl-ros evaluate`` (:func:`render_frame`: BEV | camera panels per
evaluated frame, :func:`render_semantic`: semantic panels). The two commands keep their own
looks; the geometry is shared here:

* BEV picture axes: +x (forward) up, +y (left) to the left; pixel ``(u, v) = ((y1 - y) * s,
  (x1 - x) * s)`` for the range ``(x0, y0, z0, x1, y1, z1)`` at ``s`` pixels per metre
  (:func:`bev_pixels`);
* box outlines from :mod:`bev_mtl_ros.geometry`; camera projection of the camera-view-frame boxes
  with :func:`bev_mtl_ros.data.calibration.project_view_points` (undistorted intrinsics, A2D2
  convention ``col = cx - fx*y/x, row = cy - fy*z/x``);
* BEV masks (``(grid_h, grid_w)``, row = iy along y, col = ix along x, over the same range) are
  flipped onto the picture by :func:`paint_bev_mask`.

Images are BGR uint8 (OpenCV's order) unless a function says otherwise; OpenCV is imported when a
function runs.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from bev_mtl_ros.data.calibration import project_view_points
from bev_mtl_ros.data.classes import coarse_group_lut, ids_to_rgb
from bev_mtl_ros.geometry import BOX_EDGES, box_corners_3d, box_corners_bev
from bev_mtl_ros.model.contract import ModelContract

#: BGR colours of the detection classes in the demo's renderings (cycled by class index)
CLASS_COLOURS_BGR = [(0, 200, 255), (255, 120, 0), (60, 60, 255), (0, 220, 0), (255, 0, 255),
                     (255, 255, 0)]


def class_colour(label: str, classes: Sequence[str]) -> Tuple[int, int, int]:
    """Return the BGR colour of a class name: by its index in ``classes`` (unknown: the next)."""
    i = list(classes).index(label) if label in classes else len(classes)
    return CLASS_COLOURS_BGR[i % len(CLASS_COLOURS_BGR)]


# ---------------------------------------------------------------------------------------- geometry
def bev_pixels(x, y, pc_range: Sequence[float],
               px_per_m: float) -> Tuple[np.ndarray, np.ndarray]:
    """Map BEV points (m, the range's frame) to float picture coordinates.

    Args:
        x, y: arrays of the same shape, metres.
        pc_range: (x0, y0, z0, x1, y1, z1) metres; the picture's top-left is (x1, y1).
        px_per_m: pixels per metre.
    Returns:
        (u (column), v (row)) float64 arrays of the input's shape (not clipped).
    """
    x1, y1 = float(pc_range[3]), float(pc_range[4])
    return (y1 - np.asarray(y)) * px_per_m, (x1 - np.asarray(x)) * px_per_m


def bev_box_polygons(boxes: np.ndarray, pc_range: Sequence[float],
                     px_per_m: float) -> np.ndarray:
    """Return the (N, 4, 2) float64 picture (u, v) of the BEV corners of (N, 7) boxes.

    Corner order of :func:`bev_mtl_ros.geometry.box_corners_bev` (0 front-left, 3 front-right).
    """
    c = box_corners_bev(np.asarray(boxes, np.float64).reshape(-1, 7))
    u, v = bev_pixels(c[..., 0], c[..., 1], pc_range, px_per_m)
    return np.stack([u, v], -1)


def paint_bev_mask(img: np.ndarray, mask: np.ndarray, colour: Tuple[int, int, int]) -> None:
    """Set the pixels of a BEV picture covered by a BEV grid mask to ``colour`` (in place).

    Args:
        img: (H, W, 3) uint8 picture over the mask's range.
        mask: (grid_h, grid_w) bool, row = iy (y increasing), col = ix (x increasing); resized
            nearest to the picture (picture rows = decreasing x, columns = decreasing y).
        colour: BGR.
    """
    import cv2
    m = np.ascontiguousarray(np.asarray(mask, bool)[::-1, ::-1].T).astype(np.uint8)
    m = cv2.resize(m, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
    img[m > 0] = colour


def project_boxes(boxes: np.ndarray, K: np.ndarray,
                  min_depth: float) -> List[Optional[np.ndarray]]:
    """Project camera-view-frame boxes into the undistorted image.

    Args:
        boxes: (N, 7) [x, y, z, l, w, h, yaw] in the camera's view frame (x forward, y left,
            z up), metres / radians.
        K: (3, 3) undistorted intrinsics, pixels.
        min_depth: a box with a corner at x <= min_depth (m) is not projected.
    Returns:
        per box: (8, 2) float64 (col, row) of its corners in :data:`CORNER_SIGNS` order, or None.
    """
    out: List[Optional[np.ndarray]] = []
    for corners in box_corners_3d(np.asarray(boxes, np.float64).reshape(-1, 7)):
        row, col, ok = project_view_points(corners, K, min_depth=min_depth)
        out.append(np.stack([col, row], 1) if ok.all() else None)
    return out


# ---------------------------------------------------------------------------------------- demo
def render_camera(image_rgb: np.ndarray, K: np.ndarray, boxes: np.ndarray, labels: Sequence[str],
                  scores: np.ndarray, semantic: Optional[np.ndarray] = None,
                  classes: Sequence[str] = (),
                  alpha: float = 0.45, gt_boxes: Optional[np.ndarray] = None) -> np.ndarray:
    """Return the camera image with semantic overlay and projected 3D boxes (BGR uint8).

    ``image_rgb`` (H, W, 3) uint8 RGB; ``semantic`` (h, w) class ids (resized nearest); boxes
    (N, 7) in the camera *view* frame, predictions coloured by class with "label score",
    ground truth white. Boxes with a corner behind the camera (x <= 0.1 m) are not drawn.
    """
    import cv2

    bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    if semantic is not None:
        sem = semantic
        if sem.shape[:2] != bgr.shape[:2]:
            sem = cv2.resize(sem, (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_NEAREST)
        overlay = cv2.cvtColor(ids_to_rgb(sem), cv2.COLOR_RGB2BGR)
        bgr = cv2.addWeighted(bgr, 1.0 - alpha, overlay, alpha, 0.0)
    lw = max(1, bgr.shape[1] // 640)

    def draw(pts, colour, text):
        if pts is None:
            return
        for i, j in BOX_EDGES:
            p1 = tuple(int(round(v)) for v in pts[i])
            p2 = tuple(int(round(v)) for v in pts[j])
            cv2.line(bgr, p1, p2, colour, lw, cv2.LINE_AA)
        if text:
            top = pts[4:].min(0)
            cv2.putText(bgr, text, (int(top[0]), max(12, int(top[1]) - 4)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4 * lw, colour, lw, cv2.LINE_AA)

    if gt_boxes is not None:
        for pts in project_boxes(gt_boxes, K, 0.1):
            draw(pts, (255, 255, 255), "")
    for pts, lab, sc in zip(project_boxes(boxes, K, 0.1), labels, scores):
        draw(pts, class_colour(lab, classes), f"{lab} {sc:.2f}")
    return bgr


def render_bev(points: Optional[np.ndarray], pc_range: Sequence[float], boxes: np.ndarray,
               labels: Sequence[str],
               drivable: Optional[np.ndarray] = None, gt_boxes: Optional[np.ndarray] = None,
               classes: Sequence[str] = (), px_per_m: float = 8.0) -> np.ndarray:
    """Return a bird's-eye view (BGR uint8) of one frame over ``pc_range``.

    ``points`` (N, >= 3) metres, grey by height; ``drivable`` (grid_h, grid_w) bool tinted green
    (see :func:`paint_bev_mask`); range rings every 10 m; predicted boxes (N, 7) coloured by
    class, ground-truth boxes white, each with a line from its centre to its front.
    """
    import cv2
    x0, y0, z0, x1, y1, z1 = [float(v) for v in pc_range]
    W = int(round((y1 - y0) * px_per_m))
    H = int(round((x1 - x0) * px_per_m))
    img = np.zeros((H, W, 3), np.uint8)
    if drivable is not None and drivable.size:
        paint_bev_mask(img, drivable, (0, 90, 0))
    if points is not None and len(points):
        u, v = bev_pixels(points[:, 0], points[:, 1], pc_range, px_per_m)
        ok = (u >= 0) & (u < W) & (v >= 0) & (v < H)
        z = np.clip((points[ok, 2] - z0) / max(z1 - z0, 1e-6), 0, 1)
        g = (80 + 175 * z).astype(np.uint8)
        img[v[ok].astype(int), u[ok].astype(int)] = np.stack([g, g, g], 1)
    for r in range(10, int(x1) + 1, 10):
        cv2.circle(img, (int(round(y1 * px_per_m)), int(round(x1 * px_per_m))), int(r * px_per_m),
                   (60, 60, 60), 1)

    def draw(poly, colour, thick):
        poly = poly.round().astype(np.int32)
        cv2.polylines(img, [poly], True, colour, thick, cv2.LINE_AA)
        front = ((poly[0] + poly[3]) / 2).astype(int)
        centre = poly.mean(0).astype(int)
        cv2.line(img, tuple(int(v) for v in centre), tuple(int(v) for v in front), colour, thick,
                 cv2.LINE_AA)

    if gt_boxes is not None:
        for poly in bev_box_polygons(gt_boxes, pc_range, px_per_m):
            draw(poly, (255, 255, 255), 1)
    for poly, lab in zip(bev_box_polygons(boxes, pc_range, px_per_m), labels):
        draw(poly, class_colour(lab, classes), 2)
    return img


# ---------------------------------------------------------------------------------------- evaluate
def render_frame(path: str, contract: ModelContract, points: np.ndarray, gt_boxes: np.ndarray,
                 pred_boxes: np.ndarray, pred_scores: np.ndarray,
                 image: Optional[np.ndarray] = None,
                 cam_matrix: Optional[np.ndarray] = None, drivable: Optional[np.ndarray] = None,
                 px_per_m: float = 6.0, title: str = "") -> str:
    """Write the evaluator's PNG of one frame: BEV, and the camera image when given.

    BEV over the contract's ``point_cloud_range`` (x up, y left): lidar ``points`` (N, >= 3)
    grey, predicted ``drivable`` cells (== 1) blue, GT boxes green, predictions red with their
    score (boxes (N, 7)). With an (H, W, 3) RGB ``image`` and its undistorted ``cam_matrix`` the
    image follows with the boxes projected (boxes with a corner at x <= 0.5 m skipped), scaled to
    the BEV's height. Returns the path (folders created).
    """
    import cv2
    pc_range = contract.point_cloud_range
    x0, y0, _, x1, y1, _ = pc_range
    H, W = int((x1 - x0) * px_per_m), int((y1 - y0) * px_per_m)
    bev = np.zeros((H, W, 3), np.uint8)
    if drivable is not None:
        paint_bev_mask(bev, np.asarray(drivable) == 1, (90, 40, 0))
    p = np.asarray(points, np.float64).reshape(-1, points.shape[-1] if np.ndim(points) == 2 else 3)
    if len(p):
        u, v = bev_pixels(p[:, 0], p[:, 1], pc_range, px_per_m)
        u, v = u.astype(int), v.astype(int)
        ok = (u >= 0) & (u < W) & (v >= 0) & (v < H)
        bev[v[ok], u[ok]] = (170, 170, 170)
    for boxes, colour in ((gt_boxes, (0, 220, 0)), (pred_boxes, (0, 0, 255))):
        for q in bev_box_polygons(boxes, pc_range, px_per_m).astype(np.int32):
            cv2.polylines(bev, [q], True, colour, 1, cv2.LINE_AA)
            cv2.line(bev, tuple(q[0]), tuple(q[3]), colour, 2)  # front edge
    for b, s in zip(np.asarray(pred_boxes).reshape(-1, 7), np.asarray(pred_scores).reshape(-1)):
        u, v = bev_pixels(np.array([b[0]]), np.array([b[1]]), pc_range, px_per_m)
        cv2.putText(bev, f"{s:.2f}", (int(u[0]) + 4, int(v[0])), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (0, 0, 255), 1)
    panels = [bev]
    if image is not None and cam_matrix is not None:
        img = cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2BGR).copy()
        for boxes, colour in ((gt_boxes, (0, 220, 0)), (pred_boxes, (0, 0, 255))):
            for q in project_boxes(boxes, cam_matrix, 0.5):
                if q is None or np.abs(q).max() > 1e5:
                    continue
                q = q.astype(np.int32)
                for a, b in BOX_EDGES:
                    cv2.line(img, tuple(q[a]), tuple(q[b]), colour, 2, cv2.LINE_AA)
        scale = H / img.shape[0]
        img = cv2.resize(img, (max(1, int(img.shape[1] * scale)), H), interpolation=cv2.INTER_AREA)
        panels.append(img)
    canvas = np.concatenate(panels, axis=1)
    if title:
        cv2.putText(canvas, title, (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    cv2.imwrite(path, canvas)
    return path


#: ``render_semantic`` styles: "full" = camera image | prediction | label; "prediction" =
#: prediction | coarse-group correctness (green right, red wrong, black unlabelled/ignored), which
#: holds none of the dataset's pixels (for renderings that are redistributed, e.g. the model card:
#: A2D2's CC BY-ND licence allows only unmodified copies of its images and labels).
RENDER_STYLES = ("full", "prediction")


def render_semantic(path: str, image: np.ndarray, pred: np.ndarray, gt: np.ndarray,
                    width: int = 640, style: str = "full") -> str:
    """Write one PNG of panels side by side (see :data:`RENDER_STYLES`).

    Args:
        path: output PNG path (folders created).
        image: (H, W, 3) uint8 RGB camera image.
        pred, gt: (H, W) uint8 class ids of A2D2's merged classes (255 = unlabelled, drawn black),
            any size (resized nearest to the image).
        width: width of each panel in pixels.
        style: one of :data:`RENDER_STYLES`.
    Returns:
        path.
    Raises:
        ValueError for an unknown style.
    """
    import cv2
    if style not in RENDER_STYLES:
        raise ValueError(f"render style {style!r} not in {RENDER_STYLES}")
    h = int(round(image.shape[0] * width / image.shape[1]))
    p, g = (cv2.resize(np.asarray(ids, np.uint8), (width, h), interpolation=cv2.INTER_NEAREST)
            for ids in (pred, gt))
    if style == "full":
        panels = [cv2.resize(image, (width, h), interpolation=cv2.INTER_AREA), ids_to_rgb(p),
                  ids_to_rgb(g)]
    else:
        lut = coarse_group_lut()
        cp, cg = lut[p], lut[g]
        right = np.zeros((h, width, 3), np.uint8)
        right[(cg != 255) & (cp == cg)] = (40, 200, 40)
        right[(cg != 255) & (cp != cg)] = (220, 40, 40)
        panels = [ids_to_rgb(p), right]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    cv2.imwrite(path, cv2.cvtColor(np.concatenate(panels, axis=1), cv2.COLOR_RGB2BGR))
    return path
