"""The per-frame path through the stages, shared by ``render``, ``demo`` and the live app:

driving frame -> landmarks -> retargeting -> warp geometry, shading, mouth and eyes -> generator -> paste-back.

Each call handles one frame and never raises for a frame without a face: the retargeter holds the last
pose, then eases back to neutral. The live app wraps the same calls in threads and queues.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from types import TracebackType

import cv2
import numpy as np
import torch

from livefake import face_regions as fr
from livefake.backends import BackendConfig, GeneratorBackend, start_backend
from livefake.compositor import Compositor, MouthOpening
from livefake.detail import DetailFrame, DetailLayers
from livefake.eyes import EyeLayers
from livefake.generator import GeneratorInputs, image_to_tensor, relit_interior, tensor_to_image
from livefake.landmarks import FaceLandmarks
from livefake.mouth import MouthGeometry, MouthInputs, shut_mouth_crop
from livefake.openings import SlidingOpening, warp_mask
from livefake.point_tracking import DriverLandmarks, PointTrackingConfig
from livefake.provenance import Provenance, ProvenanceConfig, around_mouth
from livefake.retarget import Motion, RetargetConfig, Retargeter
from livefake.shading import ShadingConfig, ShadingTransfer
from livefake.source import PreparedSource
from livefake.warp import WarpConfig, WarpSolver

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReenactConfig:
    """Everything the per-frame path needs to know, passed down to the stages."""

    retarget: RetargetConfig = field(default_factory=RetargetConfig)
    warp: WarpConfig = field(default_factory=WarpConfig)
    shading: ShadingConfig = field(default_factory=ShadingConfig)
    feather: float = 0.12  # paste-back feather, fraction of the crop side
    # Where the crop shrinks the photo's face more than this many times, the face is resampled from the
    # full-resolution photo through the warp instead of the crop being pasted back (0: always, inf: never).
    # Sharper, and slower on the CPU by the box's area: o_mouth.jpg's 720x720 box costs `render` at 256 a
    # quarter of its frame rate on 2 cores. Beyond 4 times the pasted crop is plainly softer than the photo
    # around it and MediaPipe misreads its mouth (o_mouth.jpg, 5.4 times: one clip's mouth correlation 0.83
    # pasted, 0.91 resampled); below it, where a 1-2 px landmark error shows more on a sharp face than a
    # soft one, self-reenactment scores the pasted crop higher (the shared clips, 2.4-3.7 times).
    full_resolution_beyond: float = 4.0
    backend: BackendConfig = field(default_factory=BackendConfig)
    # The driver's skin points steadied by the optical flow between frames (livefake.point_tracking).
    tracking: PointTrackingConfig = field(default_factory=PointTrackingConfig)
    # The badge and invisible watermark every output frame carries (livefake.provenance).
    provenance: ProvenanceConfig = field(default_factory=ProvenanceConfig)

    def __post_init__(self) -> None:
        if not self.full_resolution_beyond >= 0:  # NaN too
            raise ValueError(f"full_resolution_beyond must be >= 0 (inf: never), got {self.full_resolution_beyond}")


@dataclass(frozen=True)
class FramePlan:
    """What the CPU stages decided for one frame, ready for the generator: whether the driver's face was
    found, the motion, the share of it the fold guard kept, the (G, G, 2) warp field, the source crop with
    the irises where this frame's gaze puts them and the lids and lips the warp leaves apart slid shut
    ((3, S, S) float32), the mouth inputs, the (H, H, 3) shading gain on the source crop, the eyes and lips
    so redrawn at the photo's resolution (:mod:`livefake.detail`; for the full-resolution paste only, else
    None) and the stage times so far (ms)."""

    face_found: bool
    motion: Motion
    motion_kept: float
    field: np.ndarray
    source: np.ndarray
    mouth: MouthInputs
    shading: np.ndarray
    detail: DetailFrame | None
    timings_ms: dict[str, float]


@dataclass(frozen=True)
class FrameResult:
    """One output frame: ``frame`` (H, W, 3) uint8 photo-sized, ``crop`` (S, S, 3) uint8 (None where the face
    is resampled from the photo at full resolution: no crop is generated), whether the driver's face was
    found, the motion used, the share of it kept by the fold guard, stage times in ms."""

    frame: np.ndarray
    crop: np.ndarray | None
    face_found: bool
    motion: Motion
    motion_kept: float
    timings_ms: dict[str, float]


class Reenactor:
    """Reenacts one prepared source photo, frame by frame. A context manager; ``close()`` is safe twice."""

    def __init__(self, source: PreparedSource, config: ReenactConfig | None = None) -> None:
        self.config = config or ReenactConfig()
        self.source = source
        size = source.transform.size
        self.size = size
        self.detector: DriverLandmarks | None = None
        self._closed = False
        self.retargeter = Retargeter(source, self.config.retarget)
        self.warp = WarpSolver(source.points, size, self.config.warp, photo_corners=source.photo_corners())
        self.shading = ShadingTransfer(source.points, size, self.config.shading)
        # A wide-open photo mouth is shut by the retargeter; the generator then warps a crop whose opening is
        # filled with lip and whose lips, stretched pale, are deepened (shut_mouth_crop), and every opening of
        # the target gets the driver's interior.
        shut = fr.wide_open_mouth(source.points) > 0.5
        self.mouth = MouthGeometry(source.points, size, shut=shut)
        self.compositor = Compositor(source, self.config.feather)
        self.full_resolution = source.transform.scale * self.config.full_resolution_beyond < 1.0
        # There, the eyes and lips each frame redraws are redrawn at the photo's resolution as well.
        self.detail = DetailLayers(source, shut) if self.full_resolution else None
        self.provenance = Provenance(self.config.provenance)
        # The mark is shaped by the photo, weak around the mouth (livefake.watermark.QUIET_KEEP).
        self.provenance.prepare(source.photo, around_mouth(source))
        # The photo as a still output shows it, badge and mark included (drawn for this size once, now).
        self.marked_photo = self.provenance.apply_(source.photo.copy())
        # The full-resolution paste resamples the photo itself and takes nothing from the generator's crop
        # (on o_mouth.jpg, about 4 ms of CPU a frame spent for nothing), so there no backend is started.
        self.backend: GeneratorBackend | None = None if self.full_resolution else start_backend(size,
                                                                                                self.config.backend)
        if self.full_resolution and self.config.backend.backend != "auto":
            log.info("backend %s is not used: this photo's face is resampled from the photo at full resolution "
                     "(--full-res never runs the generator)", self.config.backend.backend)
        # The eyes' layers: every frame, the irises are laid into the eyeball where the gaze puts them.
        self.eyes = EyeLayers(shut_mouth_crop(source.crop, source.points) if shut else source.crop, source.points,
                              patch_size=max(16, size // 8))
        # Lips the warp leaves apart where the target shuts them are slid together (livefake.openings).
        self.lips = SlidingOpening.across(fr.LIPS_INNER_PAIRS, fr.INNER_MOUTH_CORNERS,
                                          source.points, size)
        self._source_tensor: tuple[np.ndarray, torch.Tensor] | None = None  # the last source array, as a tensor
        self._crop_chw = np.ascontiguousarray(source.crop.transpose(2, 0, 1), dtype=np.float32) / 255.0
        self._source_stats = torch.from_numpy(self.mouth.skin_stats(source.points, source.crop))[None]

    def process(self, driver_rgb: np.ndarray, t: float) -> FrameResult:
        """Reenact the source as the face in ``driver_rgb`` ((H, W, 3) uint8) looks at time ``t`` seconds."""
        return self.render(self.plan_frame(driver_rgb, t))

    def plan_frame(self, driver_rgb: np.ndarray, t: float) -> FramePlan:
        """:meth:`detect` then :meth:`plan`: every stage before the generator, for one driving frame."""
        face, landmarks_ms = self.detect(driver_rgb)
        planned = self.plan(face, t, driver_rgb)
        planned.timings_ms["landmarks"] = landmarks_ms
        return planned

    def detect(self, driver_rgb: np.ndarray) -> tuple[FaceLandmarks | None, float]:
        """The landmarks stage alone (tracking: call it on frames in order), and its time in ms."""
        if self._closed:
            raise RuntimeError("Reenactor is closed")
        if self.detector is None:
            self.detector = DriverLandmarks(self.config.tracking)
        start = time.perf_counter()
        face = self.detector.detect(driver_rgb)
        return face, (time.perf_counter() - start) * 1000

    def animate(self, face: FaceLandmarks | None, t: float, driver_rgb: np.ndarray | None = None) -> FrameResult:
        """The frame for already-found driver landmarks (``None``: no face), e.g. from a scripted driver."""
        return self.render(self.plan(face, t, driver_rgb))

    def plan(self, face: FaceLandmarks | None, t: float, driver_rgb: np.ndarray | None = None) -> FramePlan:
        """CPU stages for one frame: :meth:`retarget`, then :meth:`geometry`.

        Call in frame order (the retargeter smooths over time); :meth:`render` may run in another thread.
        """
        start = time.perf_counter()
        motion = self.retarget(face, t)
        planned = self.geometry(motion, face, driver_rgb)
        planned.timings_ms["retarget"] = (time.perf_counter() - start) * 1000 - planned.timings_ms["geometry"]
        return planned

    def retarget(self, face: FaceLandmarks | None, t: float) -> Motion:
        """The retargeting stage alone: the source's target landmarks and pose for this frame (in order)."""
        return self.retargeter.update(face, t)

    def geometry(self, motion: Motion, face: FaceLandmarks | None, driver_rgb: np.ndarray | None) -> FramePlan:
        """The warp geometry, shading and mouth inputs for a :meth:`retarget` result (any thread, in frame
        order: the shading is measured against the driver's neutral frame)."""
        start = time.perf_counter()
        shading = self.shading.gain(motion.reference_id, face, driver_rgb)
        field, kept, target = self.warp.solve(motion.target)
        # The interior is cut from this very frame, so at this frame's own (unsmoothed) landmarks.
        mouth = self.mouth.inputs(target, None if face is None else face.points, driver_rgb)
        source = self.lips.close(self.eyes.place(target, field), target, field)
        detail = None
        if self.detail is not None:  # the paste takes the detail wherever the crop differs from the photo
            differs = (np.abs(source - self._crop_chw).max(axis=0) > 0.5 / 255).astype(np.uint8)
            shows = warp_mask(field, cv2.GaussianBlur(cv2.dilate(differs, np.ones((3, 3), np.uint8))
                                                      .astype(np.float32), (0, 0), 0.7))
            detail = self.detail.frame(target, field, shows)
        timings = {"geometry": (time.perf_counter() - start) * 1000}
        return FramePlan(face is not None, motion, kept, field, source, mouth, shading, detail, timings)

    def render(self, plan: FramePlan) -> FrameResult:
        """Generator and paste-back for a :meth:`plan`: the output frame."""
        start = time.perf_counter()
        crop = self.generate(plan)
        mid = time.perf_counter()
        frame = self.composite(plan, crop)
        end = time.perf_counter()
        timings = dict(plan.timings_ms, generator=(mid - start) * 1000, composite=(end - mid) * 1000)
        return FrameResult(frame, crop, plan.face_found, plan.motion, plan.motion_kept, timings)

    def generate(self, plan: FramePlan) -> np.ndarray | None:
        """The generator stage alone: the reenacted (S, S, 3) uint8 crop for a :meth:`plan`, or None where the
        paste resamples the photo at full resolution (:attr:`full_resolution`) and needs no crop."""
        if self.backend is None:
            return None
        return self.backend.run(self.generator_inputs(plan))

    def describe(self) -> str:
        """What draws the face: the generator on its backend, or the photo resampled at full resolution."""
        if self.backend is None:
            return "the photo resampled at full resolution (CPU, no generator)"
        return f"the generator on {self.backend.describe()}"

    def composite(self, plan: FramePlan, crop: np.ndarray | None) -> np.ndarray:
        """The paste-back stage alone: the photo-sized frame with ``crop`` (:meth:`generate`'s) blended in,
        or on the full-resolution path (where ``crop`` is None and unused) the photo resampled through the
        plan's warp, then the badge and the watermark (:mod:`livefake.provenance`)."""
        if self.full_resolution:
            frame = self.compositor.resample(plan.field, self._opening(plan.mouth), plan.shading, plan.detail)
        else:
            if crop is None:
                raise ValueError("this reenactor pastes a generated crop: pass generate()'s result")
            frame = self.compositor.paste(crop)
        self.provenance.apply_(frame)
        return frame

    def _opening(self, mouth: MouthInputs) -> MouthOpening | None:
        """The mouth's interior for the full-resolution paste (None where the mouth is not open)."""
        if mouth.opening <= 0:
            return None
        relit = relit_interior(image_to_tensor(mouth.patch), torch.from_numpy(mouth.skin_stats)[None],
                               self._source_stats, torch.tensor([[mouth.recolor]], dtype=torch.float32))
        return MouthOpening(mouth.outline, mouth.opening, tensor_to_image(relit), mouth.affine)

    def generator_inputs(self, plan: FramePlan) -> GeneratorInputs:
        """The generator's tensors for a :meth:`plan` (batch 1, float32, on the CPU)."""
        mouth = plan.mouth
        # The same source array as the last frame's (eyes and lips as they were) gives the same tensor, which
        # a GPU backend then does not upload again.
        if self._source_tensor is None or self._source_tensor[0] is not plan.source:
            self._source_tensor = (plan.source, torch.from_numpy(plan.source)[None])
        return GeneratorInputs(
            source=self._source_tensor[1],
            warp_field=torch.from_numpy(plan.field)[None],
            mouth_patch=image_to_tensor(mouth.patch),
            mouth_affine=torch.from_numpy(mouth.affine)[None],
            mouth_mask=torch.from_numpy(mouth.mask)[None, None],
            driver_stats=torch.from_numpy(mouth.skin_stats)[None],
            source_stats=self._source_stats,
            recolor=torch.tensor([[mouth.recolor]], dtype=torch.float32),
            # Contiguous: bilinear upsampling of a permuted (channels-last) view takes 3 times as long on the CPU.
            shading=torch.from_numpy(np.ascontiguousarray(plan.shading.transpose(2, 0, 1)))[None],
        )

    def reset_reference(self) -> None:
        """Make the driver's next frame with a face its neutral pose."""
        self.retargeter.reset_reference()

    def close(self) -> None:
        self._closed = True
        if self.backend is not None:
            self.backend.close()
        if self.detector is not None:
            self.detector.close()
            self.detector = None

    def __enter__(self) -> Reenactor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
