"""Named groups of MediaPipe face-mesh landmark indices (478-point refined topology).

"Right" and "left" are the subject's own: the right eye is on the image's left in a frontal photo.
"""

from __future__ import annotations

import numpy as np

FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
CHIN = 152  # the lowest point of the face's outline, on the chin
LIPS_OUTER = (
    61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146,
)
OUTER_MOUTH_CORNERS = (61, 291)  # where the outer lips meet, right and left
# Inner lip contour in order around the mouth opening (upper from corner 78 to 308, then lower back).
LIPS_INNER = (
    78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95,
)
INNER_MOUTH_CORNERS = (LIPS_INNER[0], LIPS_INNER[10])  # where the inner lips meet, right and left
# Pairs (upper, lower) across the mouth opening, corner to corner.
LIPS_INNER_PAIRS = (
    (191, 95), (80, 88), (81, 178), (82, 87), (13, 14), (312, 317), (311, 402), (310, 318), (415, 324),
)

# Eye contours and (upper, lower) lid pairs, corner to corner.
RIGHT_EYE = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
LEFT_EYE = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)
RIGHT_EYE_LID_PAIRS = ((246, 7), (161, 163), (160, 144), (159, 145), (158, 153), (157, 154), (173, 155))
LEFT_EYE_LID_PAIRS = ((466, 249), (388, 390), (387, 373), (386, 374), (385, 380), (384, 381), (398, 382))
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (362, 263)  # corners run from the image's left to its right
RIGHT_IRIS = (468, 469, 470, 471, 472)
LEFT_IRIS = (473, 474, 475, 476, 477)

RIGHT_BROW = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
LEFT_BROW = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
NOSE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 327, 129, 358, 48, 278, 64, 294)

# Points that move with the skull, not with expression: forehead, nose bridge, eye corners, temples.
RIGID = (
    10, 151, 9, 109, 338, 67, 297, 108, 337, 168, 6, 197, 195, 5, 4, 33, 133, 362, 263,
    234, 454, 127, 356, 93, 323,
)


def lid_gap_ratio(points: np.ndarray, pairs: tuple[tuple[int, int], ...], corners: tuple[int, int]) -> float:
    """Mean gap between paired upper and lower lid points, across the eye, over the eye width
    (about 0.3 open, 0 shut, negative if the lids cross). ``points``: (478, 2+) in any consistent unit."""
    up = points[[p[0] for p in pairs], :2]
    low = points[[p[1] for p in pairs], :2]
    axis = points[corners[1], :2] - points[corners[0], :2]
    width = float(np.linalg.norm(axis))
    across = np.array([-axis[1], axis[0]]) / max(width, 1e-6)
    return float(((low - up) @ across).mean()) / max(width, 1e-6)


def eye_openness(points: np.ndarray) -> float:
    """Mean lid gap over eye width of both eyes."""
    return 0.5 * (
        lid_gap_ratio(points, RIGHT_EYE_LID_PAIRS, RIGHT_EYE_CORNERS)
        + lid_gap_ratio(points, LEFT_EYE_LID_PAIRS, LEFT_EYE_CORNERS)
    )


def iris_offset(points: np.ndarray, iris_centre: int, corners: tuple[int, int]) -> np.ndarray:
    """(2,) an iris centre's place in its eye, in eye widths from the middle of the corner line: along the
    line (towards the second corner) and across it."""
    a, b = points[corners[0], :2], points[corners[1], :2]
    axis = b - a
    width2 = max(float(axis @ axis), 1e-9)
    rel = points[iris_centre, :2] - 0.5 * (a + b)
    return np.array([rel @ axis, rel @ np.array([-axis[1], axis[0]])]) / width2


def gaze(points: np.ndarray) -> float:
    """Where both irises sit along their eyes, in eye widths (positive: towards the image's right)."""
    return 0.5 * float(iris_offset(points, RIGHT_IRIS[0], RIGHT_EYE_CORNERS)[0]
                       + iris_offset(points, LEFT_IRIS[0], LEFT_EYE_CORNERS)[0])


def interocular(points: np.ndarray) -> float:
    """Distance between the outer eye corners, the face's unit of length here."""
    return float(np.linalg.norm(points[33, :2] - points[263, :2]))


def mouth_openness(points: np.ndarray) -> float:
    """Mean inner-lip gap over the interocular distance (0 closed, about 0.5 wide open)."""
    up = points[[p[0] for p in LIPS_INNER_PAIRS[2:7]], :2]
    low = points[[p[1] for p in LIPS_INNER_PAIRS[2:7]], :2]
    return float(np.linalg.norm(up - low, axis=1).mean()) / max(interocular(points), 1e-6)


def mouth_width(points: np.ndarray) -> float:
    """Distance between the mouth's corners (:data:`OUTER_MOUTH_CORNERS`), in ``points``' units."""
    right, left = OUTER_MOUTH_CORNERS
    return float(np.linalg.norm(points[right, :2] - points[left, :2]))


def down_axis(points: np.ndarray) -> np.ndarray:
    """Unit vector (2,) pointing down the face, from between the outer eye corners to the lips."""
    down = points[list(LIPS_OUTER), :2].mean(axis=0) - points[[33, 263], :2].mean(axis=0)
    return down / max(float(np.linalg.norm(down)), 1e-9)


def inner_lip_gaps(points: np.ndarray) -> np.ndarray:
    """(9,) opening of each inner lip pair, corner to corner, along the face's downward axis (points' units)."""
    down = down_axis(points)
    upper = points[[p[0] for p in LIPS_INNER_PAIRS], :2]
    lower = points[[p[1] for p in LIPS_INNER_PAIRS], :2]
    return (lower - upper) @ down


def wide_open_mouth(points: np.ndarray) -> float:
    """0..1: how surely a face's mouth is wide open (0 below 0.15 of the eye distance, as in a smile that
    shows the teeth; 1 from 0.25, a yawn or an "O")."""
    x = float(np.clip((mouth_openness(points) - 0.15) / 0.1, 0.0, 1.0))
    return x * x * (3.0 - 2.0 * x)


_LIP_EDGE_BAND = 0.05  # of the eye distance: where the lips meet, the band in which points pass from upper to lower


def lip_weights(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) shares of a mouth's opening or shutting that each landmark follows, lower and upper.

    Lower: 0 from the upper inner lip up, 1 from the lower inner lip down around the chin, fading towards
    the jaw's corners (the jaw turns about the ears). Upper: 1 on the upper lip, fading to 0 at the nose's
    base, 0 below the mouth. The mouth corners, between the lips, follow half of each. Upper and lower are
    told apart by the inner lips' edges where each point lies along the mouth: measured from the edges'
    mean heights instead, an "O"'s lips near its corners (which curve towards each other) took part of
    each other's share, and shut, o_mouth.jpg kept a gap there half as wide as its middle's. Where the lips
    come closer than :data:`_LIP_EDGE_BAND` (towards the corners), points between and beside them pass
    from one share to the other across that band, the corners at half of each.
    """
    down = down_axis(points)
    right = np.array([-down[1], down[0]])
    iod = max(interocular(points), 1e-9)
    centre = points[list(LIPS_INNER), :2].mean(axis=0)
    along = (points[:, :2] - centre) @ down
    side = (points[:, :2] - centre) @ right
    corners = list(INNER_MOUTH_CORNERS)
    edges = []
    for lip_side in (0, 1):  # the upper edge, then the lower, from corner to corner
        ids = corners[:1] + [p[lip_side] for p in LIPS_INNER_PAIRS] + corners[1:]
        order = np.argsort(side[ids])
        edges.append(np.interp(side, side[ids][order], along[ids][order]))
    upper, lower = edges
    nose = float(along[2])  # the nose's base, above the upper lip
    across = np.clip(1.0 - np.square(side / iod), 0.0, 1.0)
    jaw = np.clip(0.5 + (along - 0.5 * (upper + lower)) / np.maximum(lower - upper, _LIP_EDGE_BAND * iod), 0.0, 1.0)
    lip = np.clip((along - nose) / np.maximum(upper - nose, 1e-3 * iod), 0.0, 1.0) * (1.0 - jaw)
    return jaw * across, lip * across
