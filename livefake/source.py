"""Source preparation: find the face in the photo and cut an aligned square crop around it.

The crop is a similarity transform of the photo (eyes level, face centred, margin for hair and
neck); its matrix is kept so the generated crop can be pasted back into the full photo.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from livefake import face_regions as fr
from livefake.errors import NoFaceError
from livefake.image_io import load_rgb
from livefake.landmarks import FaceLandmarks, LandmarkDetector

log = logging.getLogger(__name__)

# A face counts as cut by the edge when more of its landmarks than this lie outside the photo.
MAX_OUTSIDE_FRACTION = 0.03
# MediaPipe reads a photo differently at each framing, a wide-open mouth most of all: o_mouth.jpg's lower
# lip moves by up to 0.08 of the eye distance between the photo and the same photo scaled by 0.7 (closed
# mouths by under 0.01). The source is read once and everything is warped from it, so it is read in several
# views (rotation in degrees about the face, scale) and the readings are averaged.
SOURCE_VIEWS: tuple[tuple[float, float], ...] = ((0.0, 0.85), (0.0, 0.7), (-6.0, 0.85), (6.0, 0.85), (-6.0, 1.0),
                                                 (6.0, 1.0))


@dataclass(frozen=True)
class CropTransform:
    """Similarity transform from photo pixels to crop pixels: ``crop = matrix @ [x, y, 1]``.

    ``matrix``: (2, 3) float64; ``size``: side of the square crop in pixels; ``scale``: crop pixels
    per photo pixel.
    """

    matrix: np.ndarray
    size: int

    @property
    def scale(self) -> float:
        return float(np.hypot(self.matrix[0, 0], self.matrix[1, 0]))

    def inverse(self) -> np.ndarray:
        """(2, 3) matrix from crop pixels back to photo pixels."""
        return cv2.invertAffineTransform(self.matrix)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2 or 3) photo-pixel points into the crop; z is scaled like x and y."""
        out = points.astype(np.float32).copy()
        out[:, :2] = points[:, :2] @ self.matrix[:, :2].T + self.matrix[:, 2]
        if points.shape[1] > 2:
            out[:, 2] = points[:, 2] * self.scale
        return out

    def to_photo(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2+) crop-pixel points back into the photo: (N, 2) float64 photo pixels."""
        back = self.inverse()
        return points[:, :2] @ back[:, :2].T + back[:, 2]

    def cut(self, image: np.ndarray, average: bool = True) -> np.ndarray:
        """The (size, size, 3) crop of ``image``, edges replicated where the crop leaves the photo.

        A shrinking cut is made at a whole multiple of the size, at which it does not shrink, and averaged
        down. ``warpAffine`` samples one point of the photo per crop pixel (it has no area mode: asked for
        one, it interpolates linearly), so a face cut three times smaller, as a 256 crop of talking.mp4's
        is, came out aliased: hair, lashes and teeth in jagged patterns the generator then moved around.
        ``average=False`` samples points, for a view read only for its statistics (a sixth of the time).
        """
        # (Within a tenth: a cut 2.01 times smaller is made at twice its size, shrinking that by 0.5 %.)
        factor = max(1, math.ceil(1.0 / self.scale - 0.1)) if average else 1
        if factor == 1:
            return cv2.warpAffine(image, self.matrix, (self.size, self.size), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
        fine = self.matrix * factor
        fine[:, 2] += (factor - 1) / 2.0  # crop pixel i is the mean of fine pixels factor*i .. factor*i + factor-1
        side = self.size * factor
        sharp = cv2.warpAffine(image, fine, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return cv2.resize(sharp, (self.size, self.size), interpolation=cv2.INTER_AREA)


def square_view(centre: np.ndarray, angle: float, side: float, size: int) -> CropTransform:
    """The similarity that cuts a square of ``side`` photo pixels, turned by ``angle`` radians around
    ``centre`` ((2,) photo pixels), into a ``size`` x ``size`` crop with that line level."""
    scale = size / max(side, 1e-6)
    cos, sin = np.cos(-angle) * scale, np.sin(-angle) * scale
    rot = np.array([[cos, -sin], [sin, cos]])
    offset = np.array([size / 2.0, size / 2.0]) - rot @ centre
    return CropTransform(matrix=np.hstack([rot, offset[:, None]]), size=size)


def face_crop_transform(points: np.ndarray, size: int, margin: float = 1.25) -> CropTransform:
    """Aligned square crop around a face given its (478, 2+) landmarks in photo pixels.

    FFHQ-style: the crop side is about four times the eye-to-mouth distance (``margin`` scales
    it), eyes level, centre below the eyes so hair, jaw drop and neck fit.
    """
    right_eye = points[[33, 133], :2].mean(axis=0)
    left_eye = points[[263, 362], :2].mean(axis=0)
    mouth = points[list(fr.OUTER_MOUTH_CORNERS), :2].mean(axis=0)
    eye_mid = 0.5 * (right_eye + left_eye)
    eye_to_eye = left_eye - right_eye
    eye_to_mouth = mouth - eye_mid
    half_side = margin * max(2.0 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth))
    centre = eye_mid + 0.5 * eye_to_mouth
    angle = float(np.arctan2(eye_to_eye[1], eye_to_eye[0]))
    return square_view(centre, angle, 2.0 * half_side, size)


@dataclass(frozen=True)
class PreparedSource:
    """The source photo ready for the generator.

    ``photo``: (H, W, 3) uint8 RGB, even width and height (what the output frames will be);
    ``crop``: (S, S, 3) uint8 aligned face crop; ``points``: (478, 3) float32 landmarks in crop
    pixels; ``transform``: photo to crop.
    """

    photo: np.ndarray
    crop: np.ndarray
    points: np.ndarray
    transform: CropTransform
    name: str

    def photo_corners(self) -> np.ndarray:
        """(4, 2) float32: the photo's outer pixel corners in crop pixels (top left, top right, bottom right,
        bottom left): where the photo ends, which a close-up's crop reaches past."""
        h, w = self.photo.shape[:2]
        corners = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]])
        return self.transform.apply(corners)[:, :2]


def fit_to_size(image: np.ndarray, width: int, height: int, focus: tuple[float, float] | None = None) -> np.ndarray:
    """Scale ``image`` to cover width x height and cut a window of that size, centred on ``focus`` ((x, y)
    in ``image``'s pixels, e.g. the face; default the centre) as far as the image allows. Keeps the aspect."""
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    resized = cv2.resize(image, (max(width, round(w * scale)), max(height, round(h * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    fx, fy = (w / 2, h / 2) if focus is None else focus
    left = int(np.clip(round(fx * scale - width / 2), 0, resized.shape[1] - width))
    top = int(np.clip(round(fy * scale - height / 2), 0, resized.shape[0] - height))
    return np.ascontiguousarray(resized[top:top + height, left:left + width])


def even_frame(image: np.ndarray) -> np.ndarray:
    """Drop a last row or column so both sides are even, as H.264 in yuv420p needs."""
    h, w = image.shape[:2]
    return np.ascontiguousarray(image[: h - h % 2, : w - w % 2])


# The source crop is wider than a face crop: the head may lean in, walk towards the camera or move aside
# inside it (harsh_light.mp4: the driver's face grows by half; self-reenactment 21 dB at 1.25, 32 dB here).
SOURCE_CROP_MARGIN = 1.8


def prepare_source(
    image: np.ndarray | str | Path,
    *,
    crop_size: int = 256,
    margin: float = SOURCE_CROP_MARGIN,
    output_size: tuple[int, int] | None = None,
    name: str | None = None,
) -> PreparedSource:
    """Load (if a path), detect the largest face, and cut the aligned crop.

    Raises :class:`NoFaceError` (one line for the user) when there is no face or it is cut by the edge.
    """
    if isinstance(image, (str, Path)):
        name = name or str(image)
        photo = load_rgb(image)
    else:
        name = name or "image"
        photo = image
    with LandmarkDetector(video=False, max_faces=4) as detector:
        if output_size is not None:
            # Fit the output size around the face (not the photo's centre: one reading places it), then
            # read the face there.
            found = detector.detect(even_frame(photo))
            centre = None if found is None else found.points[:, :2].mean(axis=0)
            focus = None if centre is None else (float(centre[0]), float(centre[1]))
            photo = fit_to_size(photo, *output_size, focus=focus)
        face = read_photo_face(detector, even_frame(photo))
    photo = even_frame(photo)
    fitted = "" if output_size is None else f" once fitted to {output_size[0]}x{output_size[1]}"
    check_face(face, name + fitted,
               hint="choose an output size closer to the photo's shape" if output_size is not None else None)
    assert face is not None
    if face.faces_found > 1:
        log.warning("%s shows %d faces; using the largest", name, face.faces_found)
    transform = face_crop_transform(face.points, crop_size, margin)
    return PreparedSource(
        photo=photo, crop=transform.cut(photo), points=transform.apply(face.points), transform=transform, name=name
    )


def read_photo_face(detector: LandmarkDetector, photo: np.ndarray) -> FaceLandmarks | None:
    """The largest face in ``photo`` with its landmarks averaged over the :data:`SOURCE_VIEWS` of it (a view
    that finds no face, or another face, is left out); ``None`` when the photo as it is shows no face."""
    first = detector.detect(photo)
    if first is None:
        return None
    height, width = photo.shape[:2]
    centre = first.points[:, :2].mean(axis=0)
    readings = [first.points]
    for angle, scale in SOURCE_VIEWS:
        matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
        face = detector.detect(cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                              borderMode=cv2.BORDER_REFLECT))
        if face is None:
            continue
        back = cv2.invertAffineTransform(matrix)
        points = face.points.copy()
        points[:, :2] = face.points[:, :2] @ back[:, :2].T + back[:, 2]
        points[:, 2] /= scale  # depth is in pixels of the view
        if np.median(np.linalg.norm(points[:, :2] - first.points[:, :2], axis=1)) > 0.2 * fr.interocular(first.points):
            continue  # the largest face of this view is another one
        readings.append(points)
    return replace(first, points=np.mean(readings, axis=0).astype(np.float32))


def check_face(face: FaceLandmarks | None, name: str, hint: str | None = None) -> None:
    """Raise :class:`NoFaceError` with advice (``hint`` replaces the default) when ``face`` is missing or
    cut by the image edge."""
    if face is None:
        raise NoFaceError(f"no face found in '{name}'; use a photo with one clear, roughly frontal face")
    outside = face.outside_fraction()
    if outside > MAX_OUTSIDE_FRACTION:
        raise NoFaceError(
            f"the face in '{name}' is cut by the image edge ({outside:.0%} of it is outside); "
            + (hint or "use a photo that shows the whole face with some margin")
        )


def default_face() -> np.ndarray:
    """The built-in source face: NASA's public-domain astronaut portrait, as shipped by scikit-image."""
    from skimage import data

    return data.astronaut()
