"""Motion retargeting: the driver's motion against its neutral reference, applied to the source.

The driver's landmarks are smoothed (One-Euro; in x and y only those :mod:`livefake.point_tracking` did
not filter already: lips, eyes, irises, the outline and the rest of the mesh no stage reads), then split
by a similarity fit on rigid points into head pose (rotation, scale, shift) and expression (what is left
once pose is removed). Expression is carried into the source's head frame and added to the source's own
landmarks (a wide-open photo mouth first brought to the driver's neutral one: shut, as wide, its corners as
high); eyelids follow the driver's lid gap as a ratio, lips are kept from crossing; pose is clamped
to what a 2-D warp can show and applied about the source's head centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from livefake import face_regions as fr
from livefake.landmarks import FaceLandmarks
from livefake.smoothing import OneEuroFilter
from livefake.source import PreparedSource


@dataclass(frozen=True)
class RetargetConfig:
    """How driver motion maps onto the source."""

    smoothing: bool = True
    # One-Euro: tuned on the shared clips for lips that keep up with speech (talking.mp4 mouth
    # correlation 0.88 -> 0.93 against the textbook 1.5 / 6 / 1) while cutting still jitter 3.5x.
    min_cutoff_hz: float = 1.0
    beta: float = 40.0  # per (interocular distances per second)
    d_cutoff_hz: float = 3.0
    max_yaw_deg: float = 30.0
    max_pitch_deg: float = 25.0
    max_roll_deg: float = 35.0
    max_shift: float = 0.3  # of the crop side
    crop_margin: float = 0.1  # the face keeps this share of the crop side from its edges
    # A close-up's photo ends a little below the chin, and the neck between is all there is to stretch as the
    # head rises: o_mouth.jpg shows about 70 px of it, which harsh_light.mp4's driver, leaning in and rising,
    # drew out five times, the chin a long pale wedge. The head's shift upwards stops where this band (straight
    # down from the chin to where the photo ends, or the crop) is this many times the photo's own, or as long
    # as shutting the photo's open mouth alone makes it. A rise the head's turn makes is kept: rotation.mp4's
    # first frame, tilted back by the clip, stretches its neck 12 times and matches the real frames better so
    # than held (self-reenactment 27.7 dB against 23.4); and 3, not 2, because harsh_light.mp4's first frame,
    # shifted up by the clip, stretches its collar 2.9 times (30.6 dB against 22.9 held at 2).
    max_neck_stretch: float = 3.0
    min_scale: float = 0.55
    max_scale: float = 1.8
    # How much wider than the source's own the eyes may open: the eye layers keep the iris round, so
    # eyes opened wide in surprise (talking.mp4: up to 1.43 times the neutral gap) are shown as wide.
    max_eye_ratio: float = 1.5
    min_eye_ratio: float = 0.1  # a slit stays when shut, so the warp stays one-to-one
    max_gaze: float = 0.2  # iris shift inside the eye, in eye widths
    hold_s: float = 0.5  # face lost: hold the last pose this long ...
    ease_s: float = 0.8  # ... then ease back to neutral over this long
    rejoin_s: float = 0.25  # face back: blend into the new measurement over this long

    def __post_init__(self) -> None:
        if not 0 < self.min_scale <= 1 <= self.max_scale:
            raise ValueError(f"expected min_scale <= 1 <= max_scale, got {self.min_scale}, {self.max_scale}")
        if self.max_neck_stretch < 1:
            raise ValueError(f"max_neck_stretch must be >= 1, got {self.max_neck_stretch}")
        if self.min_eye_ratio <= 0:
            raise ValueError(f"min_eye_ratio must be positive, got {self.min_eye_ratio}")


@dataclass(frozen=True)
class Motion:
    """Where the source's landmarks go for one frame.

    ``target``: (478, 3) float64 in source-crop pixels; ``pose``: clamped (yaw, pitch, roll) in degrees
    relative to the driver's reference; ``reference_id``: which neutral pose of the driver the motion is
    measured from (0: none yet; a new number each time the reference is taken).
    """

    target: np.ndarray
    pose: tuple[float, float, float]
    reference_id: int = 0


_JAW_SHARE = 0.7  # of a mouth's shutting done by the jaw; the upper lip does the rest
# A wide-open photo mouth drawn in (an "O") is widened back towards the driver's neutral width, at most this
# many times, and its corners moved up or down by at most this share of its half width to sit as the driver's
# do (:func:`mouth_corner_shift`). With the face around them following less the further it lies, out to
# MOUTH_REACH half widths from the mouth's middle, the shift stays one-to-one at both limits together (its
# Jacobian above 0.3: a test); at 1.5 and a reach of 2 it folded the cheek beside a corner.
MAX_WIDENING = 1.4
MAX_CORNER_LIFT = 0.4
MOUTH_REACH = 2.5


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares ``dst ≈ s R src + t`` (Umeyama 1991) for (N, 3) point sets; proper rotation."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    xs, xd = src - mu_s, dst - mu_d
    u, sv, vt = np.linalg.svd(xd.T @ xs / len(src))
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = (u * d) @ vt
    var_s = (xs**2).sum() / len(src)
    scale = float((sv * d).sum() / var_s)
    return scale, rot, mu_d - scale * rot @ mu_s


def euler_from_rotation(rot: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of ``rot = Rz(roll) Ry(yaw) Rx(pitch)``; x right, y down, z depth."""
    yaw = np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0))
    pitch = np.arctan2(rot[2, 1], rot[2, 2])
    roll = np.arctan2(rot[1, 0], rot[0, 0])
    return float(np.degrees(yaw)), float(np.degrees(pitch)), float(np.degrees(roll))


def rotation_from_euler(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Inverse of :func:`euler_from_rotation` (degrees in, (3, 3) out)."""
    a, b, c = np.radians(pitch), np.radians(yaw), np.radians(roll)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def head_pose(points: np.ndarray, reference: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (scale, rotation, shift) taking ``reference``'s rigid points onto ``points``'s."""
    rigid = list(fr.RIGID)
    return similarity_fit(reference[rigid], points[rigid])


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def mouth_corner_shift(xy: np.ndarray, centre: np.ndarray, sideways: np.ndarray, half_width: float,
                       widening: float, lifts: tuple[float, float]) -> np.ndarray:
    """(N, 2) shift of the points ``xy`` ((N, 2)) that moves a mouth's corners out by ``widening`` times its
    half width (the mouth drawn 1 + ``widening`` times as wide) and down by ``lifts`` (pixels; negative: up),
    the first for the corner on the side ``sideways`` (a unit vector across the face) points to from
    ``centre``, the second for the other.
    The lips between the corners move out in proportion to their distance from the middle, and down by the
    square of it (the middle stays); the face around them less the further it lies, nothing beyond
    :data:`MOUTH_REACH` half widths from ``centre``."""
    offset = xy - centre
    falloff = 1.0 - np.clip((np.linalg.norm(offset, axis=1) / half_width - 1.0) / (MOUTH_REACH - 1.0), 0.0, 1.0)
    falloff = falloff * falloff * (3.0 - 2.0 * falloff)
    across = offset @ sideways
    down = np.array([sideways[1], -sideways[0]])
    towards = np.clip(np.abs(across) / half_width, 0.0, 1.0) ** 2  # 0 in the middle, 1 at the corners
    lift = np.where(across > 0, lifts[0], lifts[1]) * towards
    return falloff[:, None] * ((widening * across)[:, None] * sideways + lift[:, None] * down)


class Retargeter:
    """Turns each driving frame's landmarks into target landmarks for the source. One per driver.

    The first frame with a face becomes the neutral reference; :meth:`reset_reference` makes the
    next one the reference again. Frames without a face hold the last pose, then ease to neutral.
    """

    def __init__(self, source: PreparedSource, config: RetargetConfig | None = None) -> None:
        self.config = config or RetargetConfig()
        self.source_points = source.points.astype(np.float64)
        # Photo-to-crop rotation: the driver's image-plane shift is applied in photo directions.
        self._crop_rotation = source.transform.matrix[:, :2] / source.transform.scale
        self._crop_size = source.transform.size
        self._photo_corners = source.photo_corners().astype(np.float64)
        self._source_iod = fr.interocular(self.source_points)
        self._lip_weights = fr.lip_weights(self.source_points)
        self._to_rest = np.zeros_like(self.source_points)
        self._filter = OneEuroFilter(self.config.min_cutoff_hz, self.config.beta, self.config.d_cutoff_hz)
        self._reference: np.ndarray | None = None
        self._reference_id = 0
        self._align: tuple[float, np.ndarray, np.ndarray] | None = None
        self._shown: np.ndarray | None = None  # driver shape (reference pixels) last shown
        self._lost_since: float | None = None
        self._lost_shape: np.ndarray | None = None
        self._back_since: float | None = None
        self._back_from: np.ndarray | None = None

    def reset_reference(self) -> None:
        """Take the next frame with a face as the new neutral pose."""
        self._reference = None
        self._filter.reset()
        self._shown = None

    def adopt_reference(self, other: Retargeter) -> None:
        """Use ``other``'s neutral driver pose (the live app switching to another source photo: the new
        photo starts from the driver's current expression instead of re-taking neutral)."""
        if other._reference is None:
            self.reset_reference()
            return
        self._reference = other._reference.copy()
        self._reference_id += 1
        self._align = head_pose(self.source_points, self._reference)
        self._iod = other._iod
        self._to_rest = self._mouth_at_rest()
        self._filter.reset()
        self._shown = None

    def update(self, face: FaceLandmarks | None, t: float) -> Motion:
        """Motion for the driving frame taken at ``t`` seconds; ``face`` is ``None`` when none was found."""
        if face is None:
            return self._motion(self._lost(t))
        points = face.points.astype(np.float64)
        if self._reference is None:
            self._reference = points.copy()
            self._reference_id += 1
            self._align = head_pose(self.source_points, points)
            self._iod = fr.interocular(points)
            self._to_rest = self._mouth_at_rest()
        shape = points
        if self.config.smoothing:  # One-Euro, on what the point tracker did not filter already
            shape = self._filter(points / self._iod, t) * self._iod
            if face.steady is not None:  # x and y; its z stays MediaPipe's, so it is smoothed here
                shape[face.steady, :2] = points[face.steady, :2]
        if self._lost_since is not None:  # face is back: blend from what was shown
            self._lost_since, self._back_since, self._back_from = None, t, self._shown
        if self._back_since is not None and self._back_from is not None:
            w = _smoothstep((t - self._back_since) / max(self.config.rejoin_s, 1e-6))
            shape = (1 - w) * self._back_from + w * shape
            if w >= 1.0:
                self._back_since = self._back_from = None
        self._shown = shape
        return self._motion(shape)

    def _lost(self, t: float) -> np.ndarray | None:
        if self._shown is None or self._reference is None:
            return None
        if self._lost_since is None:
            self._lost_since, self._lost_shape = t, self._shown
        assert self._lost_shape is not None
        w = _smoothstep((t - self._lost_since - self.config.hold_s) / max(self.config.ease_s, 1e-6))
        self._shown = (1 - w) * self._lost_shape + w * self._reference
        return self._shown

    def _motion(self, shape: np.ndarray | None) -> Motion:
        if shape is None or self._reference is None or self._align is None:
            return Motion(target=self.source_points.copy(), pose=(0.0, 0.0, 0.0))
        cfg = self.config
        ref = self._reference
        scale, rot, shift = head_pose(shape, ref)
        # Expression: the driver's shape with its head pose removed, as offsets from the reference.
        mu = shape[list(fr.RIGID)].mean(axis=0)
        mu_ref = ref[list(fr.RIGID)].mean(axis=0)
        unposed = (shape - mu) @ rot / scale + mu_ref
        expression = unposed - ref
        a_scale, a_rot, _ = self._align
        expressed = self.source_points + self._to_rest + a_scale * expression @ a_rot.T
        self._retarget_lids(expressed, unposed)
        self._retarget_gaze(expressed, unposed)
        self._keep_lips_apart(expressed)

        yaw, pitch, roll = euler_from_rotation(rot)
        yaw = float(np.clip(yaw, -cfg.max_yaw_deg, cfg.max_yaw_deg))
        pitch = float(np.clip(pitch, -cfg.max_pitch_deg, cfg.max_pitch_deg))
        roll = float(np.clip(roll, -cfg.max_roll_deg, cfg.max_roll_deg))
        rot_src = a_rot @ rotation_from_euler(yaw, pitch, roll) @ a_rot.T
        scale = float(np.clip(scale, cfg.min_scale, cfg.max_scale))
        move = a_scale * (self._crop_rotation @ (mu - mu_ref)[:2])
        limit = cfg.max_shift * self._crop_size
        move = move * min(1.0, limit / max(float(np.linalg.norm(move)), 1e-9))

        centre = self.source_points[list(fr.RIGID)].mean(axis=0)
        target = centre + scale * (expressed - centre) @ rot_src.T
        target[:, :2] += move
        target = self._keep_inside(self._keep_neck(target, move))
        return Motion(target=target, pose=(yaw, pitch, roll), reference_id=self._reference_id)

    def _mouth_at_rest(self) -> np.ndarray:
        """(478, 3) shift that brings the photo's wide-open mouth to the driver's neutral one: shut as far,
        drawn as wide, its corners as high.

        Motion is relative: a photo with its mouth open would stay open while the driver rests, and open
        into tall shapes as they speak (o_mouth.jpg: mouth correlation 0.25). So the jaw is first raised by
        how much wider the photo's lips part than the driver's neutral lips (in the photo's scale); the
        driver's opening then opens it from there. An "O" also draws the mouth's corners in: left so, the
        driver's own "O" drew them in again (o_mouth.jpg on mouth_open.mp4: 0.29 of the eye distance wide
        and 0.38 open, a shape MediaPipe read as shut lips), so they are moved out as far as the driver's
        neutral mouth is wider."""
        assert self._reference is not None and self._align is not None
        src = self.source_points
        # Only a wide-open mouth: lips a little apart (a smile that shows the teeth) stay as the photo has them.
        open_weight = fr.wide_open_mouth(src)
        wider = fr.inner_lip_gaps(src) - self._align[0] * fr.inner_lip_gaps(self._reference)
        excess = open_weight * np.maximum(wider, 0.0)
        down2 = fr.down_axis(src)
        across_axis = np.array([-down2[1], down2[0]])
        shift = np.zeros_like(src)
        if excess.any():
            # The jaw does most of the shutting, the upper lip the rest. Each point shuts by the excess of the
            # lip pair across from it (interpolated along the mouth): an O shuts more in the middle than at the
            # corners, and points one above the other move alike (a lip rolled in shows its landmarks crossed).
            # The pairs' own points shut by their own pair's excess: interpolated at each point's place, the
            # lips of a mouth drawn askew (mouth_open.jpg) took different amounts and stayed apart.
            across = src[:, :2] @ across_axis
            pairs = np.array(fr.LIPS_INNER_PAIRS)
            at = 0.5 * (across[pairs[:, 0]] + across[pairs[:, 1]])
            order = np.argsort(at)
            amount = np.interp(across, at[order], excess[order])
            amount[pairs[:, 0]] = amount[pairs[:, 1]] = excess
            lower, upper = self._lip_weights
            shift[:, :2] = (amount * (-_JAW_SHARE * lower + (1.0 - _JAW_SHARE) * upper))[:, None] * down2
        if open_weight <= 0.0:
            return shift
        # Then its corners: out as far as the driver's neutral mouth is wider, and up or down to sit where the
        # driver's do against where the lips meet. Shut, an O's corners are left below that point (o_mouth.jpg:
        # 0.033 of the eye distance, where the same man's neutral corners sit 0.02-0.03 above): a frown in
        # every frame at rest. Heights and widths are taken in eye distances, as MediaPipe's readings are.
        to_source = self._source_iod / fr.interocular(self._reference)
        half_width = 0.5 * fr.mouth_width(src)
        widening = open_weight * (np.clip(to_source * fr.mouth_width(self._reference) / max(2 * half_width, 1e-9),
                                          1.0, MAX_WIDENING) - 1.0)
        centre = src[list(fr.OUTER_MOUTH_CORNERS), :2].mean(axis=0)
        shaped = src[:, :2] + shift[:, :2] + mouth_corner_shift(src[:, :2], centre, across_axis, half_width,
                                                                 widening, (0.0, 0.0))
        mid_upper, mid_lower = fr.LIPS_INNER_PAIRS[len(fr.LIPS_INNER_PAIRS) // 2]
        meet, meet_ref = (0.5 * (p[mid_upper, :2] + p[mid_lower, :2]) for p in (shaped, self._reference))
        down_ref = fr.down_axis(self._reference)
        limit = MAX_CORNER_LIFT * half_width
        lifts = [open_weight * float(np.clip(to_source * (self._reference[c, :2] - meet_ref) @ down_ref
                                             - (shaped[c] - meet) @ down2, -limit, limit))
                 for c in fr.OUTER_MOUTH_CORNERS]
        if (src[fr.OUTER_MOUTH_CORNERS[0], :2] - centre) @ across_axis < 0:  # the first corner on the other side
            lifts.reverse()
        shift[:, :2] += mouth_corner_shift(src[:, :2], centre, across_axis, half_width, widening, tuple(lifts))
        return shift

    def _room_below(self, point: np.ndarray) -> float:
        """Crop pixels straight down from ``point`` ((2+,) crop pixels) to where the photo ends, or the crop."""
        x, y = float(point[0]), float(point[1])
        room = self._crop_size - 0.5 - y
        for a, b in zip(self._photo_corners, np.roll(self._photo_corners, -1, axis=0)):
            if a[0] == b[0] or (a[0] - x) * (b[0] - x) > 0:
                continue  # this edge of the photo does not cross the line down from the point
            edge = a[1] + (x - a[0]) * (b[1] - a[1]) / (b[0] - a[0])
            if edge > y:
                room = min(room, edge - y)
        return room

    def _keep_neck(self, target: np.ndarray, move: np.ndarray) -> np.ndarray:
        """Take back as much of the head's upward shift ``move`` ((2,) crop pixels) as stretches the band below
        the chin past ``max_neck_stretch`` (see :class:`RetargetConfig`); a rise the head's turn makes stays."""
        chin = fr.CHIN
        allowed = max(self._room_below(self.source_points[chin] + self._to_rest[chin]),
                      self.config.max_neck_stretch * self._room_below(self.source_points[chin]))
        lowered = min(self._room_below(target[chin]) - allowed, -float(move[1]))
        if lowered <= 0:
            return target
        target = target.copy()
        target[:, 1] += lowered
        return target

    def _keep_inside(self, target: np.ndarray) -> np.ndarray:
        """Shrink, then shift the face back so it keeps a margin inside the crop: a face pressed against
        the crop's fixed border would drag the background along."""
        size = self._crop_size
        lo, hi = self.config.crop_margin * size, (1 - self.config.crop_margin) * size
        xy = target[:, :2]
        span = (xy.max(axis=0) - xy.min(axis=0)).max()
        if span > hi - lo:
            centre = xy.mean(axis=0)
            target = target.copy()
            target[:, :2] = centre + (xy - centre) * ((hi - lo) / span)
            xy = target[:, :2]
        shift = np.maximum(lo - xy.min(axis=0), 0.0) - np.maximum(xy.max(axis=0) - hi, 0.0)
        if shift.any():
            target = target.copy()
            target[:, :2] += shift
        return target

    def _retarget_lids(self, expressed: np.ndarray, unposed: np.ndarray) -> None:
        """Upper lids follow the driver's lid gap as a ratio of the reference, on the source's own eyes."""
        cfg = self.config
        assert self._reference is not None
        src = self.source_points
        for pairs, corners in ((fr.RIGHT_EYE_LID_PAIRS, fr.RIGHT_EYE_CORNERS),
                               (fr.LEFT_EYE_LID_PAIRS, fr.LEFT_EYE_CORNERS)):
            ratio = fr.lid_gap_ratio(unposed, pairs, corners) / max(
                fr.lid_gap_ratio(self._reference, pairs, corners), 1e-6)
            ratio = float(np.clip(ratio, cfg.min_eye_ratio, cfg.max_eye_ratio))
            for upper, lower in pairs:
                expressed[upper] = expressed[lower] + ratio * (src[upper] - src[lower])

    def _retarget_gaze(self, expressed: np.ndarray, unposed: np.ndarray) -> None:
        """Irises move inside the source's eyes as the driver's do inside theirs, in eye-width units."""
        assert self._reference is not None
        src = self.source_points
        for iris, corners in ((fr.RIGHT_IRIS, fr.RIGHT_EYE_CORNERS), (fr.LEFT_IRIS, fr.LEFT_EYE_CORNERS)):
            now = fr.iris_offset(unposed, iris[0], corners)
            ref = fr.iris_offset(self._reference, iris[0], corners)
            du, dv = np.clip(now - ref, -self.config.max_gaze, self.config.max_gaze)
            axis = src[corners[1], :2] - src[corners[0], :2]
            shift = du * axis + dv * np.array([-axis[1], axis[0]])
            rest = expressed[list(corners), :2].mean(axis=0) - src[list(corners), :2].mean(axis=0)
            expressed[list(iris), :2] = src[list(iris), :2] + rest + shift

    def _keep_lips_apart(self, expressed: np.ndarray) -> None:
        """Upper inner lip never goes below the lower one (a fold), with a hair's gap left between."""
        src = self.source_points
        down = np.r_[fr.down_axis(src), 0.0]
        for upper, lower in fr.LIPS_INNER_PAIRS:
            min_gap = min(0.01 * self._source_iod, float((src[lower] - src[upper]) @ down))
            gap = float((expressed[lower] - expressed[upper]) @ down)
            if gap < min_gap:
                push = 0.5 * (min_gap - gap) * down
                expressed[upper] -= push
                expressed[lower] += push
