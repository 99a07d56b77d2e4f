"""The invisible provenance watermark: a payload hidden in every output frame, and the detector for it.

How it is made, and why:

- The mark lives in the blue-yellow chroma (Cb) only: luma is left as it was (within rounding), and a
  photo's own chroma carries about a tenth of the energy its luma does at these scales, so the mark stands
  out from the picture behind it at a tenth of the strength.
- It is a sum of low spatial frequencies (wavelengths of 1/23 to 1/8 of the frame height), which video
  codecs and JPEG keep while they drop fine detail, repeated in tiles of 256/360 of the frame height.
  Because it repeats, the detector sums every tile it sees into one (a *fold*): a crop only shifts the
  fold, and a shift is found by one FFT.
- Half of the frequencies (the *sync*) carry fixed pseudo-random phases: they say "livefake" and fix the
  shift and the scale. The other half carry the payload's bits as a phase flip of 0 or 180 degrees, at a
  higher amplitude than the sync's (:data:`BITS_GAIN`).
- The detector sees only the phase of each frequency. The key's phases are random and independent of any
  picture not marked with this key, so on such a picture its scores have known distributions: the
  sync's best z over every shift, scale and mirroring (Bonferroni), and, where the sync points, the
  bits' agreement whatever their values (chi-square, 40 degrees of freedom). The p-value joins both
  (Fisher) and is conservative by construction; benchmarks/provenance.py checks it on real unmarked
  video. It says nothing about pictures made to carry the mark: the key is in this source, so the mark
  can be forged or removed by someone who sets out to; it is a label for honest processing, not proof.
- The pattern is fixed for a frame size, so embedding is four saturating uint8 tensor operations on the
  output frame (about 0.3-0.4 ms at 720p on this project's CPU, 0.1 ms on an H100), on whatever device
  the frame is.

The payload is 40 bits: livefake's version (4+6+6 bits), a user-chosen id (16 bits, 0 for none) and a
CRC-8 of both, which catches any one to three wrong bits (a heavier misread passes 1 time in 256); a
payload is read only where the mark itself is found.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import torch

CANONICAL_HEIGHT = 360  # the detector works at this frame height, whatever the frame's size
TILE = 256  # the pattern repeats every TILE pixels at CANONICAL_HEIGHT (512 px in a 720p frame)
# Cycles per tile: wavelengths of 43 to 15.5 px at CANONICAL_HEIGHT, where H.264 at 360p keeps most of
# the mark for its strength (shorter ones it drops, longer ones drown in the photo's own colour).
RING = (6.0, 16.5)
PAYLOAD_BITS = 40
# The payload's frequencies are drawn at this many times the sync's amplitude (the detector reads phases
# only, so this changes no key and every earlier mark still reads). The sync is found in every window of
# H.264 at 360p with room to spare; lent to the bits, that energy raised their accuracy after H.264 from
# 0.953 to 0.961 (benchmarks/RESULTS.md).
BITS_GAIN = 1.3
SYNC_SHARE = 0.5  # of the frequencies: the sync (finds the mark), the rest carries the bits
SEED = 0x11FE_FA4E  # livefake's key: changing it makes every earlier mark unreadable
CB_IN_RGB = np.array([0.0, -0.344136, 1.772])  # an RGB change that moves Cb by 1 and leaves Y and Cr
SCALES = 1 + 0.004 * np.arange(-7, 38)  # frame height / marked height: crops of up to 13 %, a small pad
DEFAULT_PSNR_DB = 40.5
ALPHA = 1e-4  # a frame, window or file is called marked at a p-value of at most this; only then is a payload read
# Shorter wavelengths of the band get more of the energy (amplitude grows as frequency ** TILT): the eye
# sees slow colour drifts best, the codec keeps the whole band about alike.
TILT = 1.5
# Where the picture is flat the mark is weakest (it would show there), where it is busy the strongest:
# the gain follows the local luma deviation (levels, over ~1/40 of the frame height) / MASK_LEVEL,
# clipped to MASK_RANGE. Then all of it is scaled down, if need be, to the PSNR asked for; where the
# picture leaves energy to spare, what lies above the floor is scaled up, by at most MAX_BOOST.
MASK_LEVEL = 4.0
MASK_RANGE = (0.35, 1.6)
MAX_BOOST = 1.3
# Where the caller asks for quiet (livefake: on the mouth) the mark keeps this share of its strength. The
# lips are what changes most from the photo the mark was shaped by, and at full strength the ripple there
# moved MediaPipe's reading of the output's lips (mouth correlation 0.945 unmarked, 0.940 marked).
QUIET_KEEP = 0.2


def _crc8(value: int, nbits: int) -> int:
    """CRC-8 (polynomial 0x07, initial value 0xFF: all-zero bits are no payload) of the ``nbits`` low bits
    of ``value``, most significant first."""
    crc = 0xFF
    for i in reversed(range(nbits)):
        crc ^= ((value >> i) & 1) << 7
        crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


@dataclass(frozen=True)
class Payload:
    """What a mark says: the livefake version that made the frame and an optional user id (0: none)."""

    version: tuple[int, int, int]
    user_id: int = 0

    def __post_init__(self) -> None:
        major, minor, patch = self.version
        if not (0 <= major < 16 and 0 <= minor < 64 and 0 <= patch < 64):
            raise ValueError(f"version {self.version} does not fit the mark (major < 16, minor and patch < 64)")
        if not 0 <= self.user_id < 1 << 16:
            raise ValueError(f"the user id must be a whole number from 0 to 65535, got {self.user_id}")

    @classmethod
    def for_version(cls, version: str, user_id: int = 0) -> Payload:
        """The payload for a version string such as '0.1.0' or '1.2rc1' (leading digits of each part; a part
        beyond what the mark holds is carried as its largest value)."""
        parts = [int(m.group()) if (m := re.match(r"\d+", p)) else 0 for p in version.split(".")[:3]]
        major, minor, patch = (parts + [0, 0, 0])[:3]
        return cls((min(major, 15), min(minor, 63), min(patch, 63)), user_id)

    def to_bits(self) -> np.ndarray:
        """(40,) uint8, most significant first: version, user id, CRC-8 of both."""
        major, minor, patch = self.version
        value = (((major << 6 | minor) << 6 | patch) << 16) | self.user_id
        word = value << 8 | _crc8(value, 32)
        return np.array([(word >> i) & 1 for i in reversed(range(PAYLOAD_BITS))], np.uint8)

    @classmethod
    def from_bits(cls, bits: np.ndarray) -> Payload | None:
        """The payload, or None when the CRC says the bits were misread."""
        word = 0
        for b in np.asarray(bits).astype(int):
            word = word << 1 | int(b)
        value, crc = word >> 8, word & 0xFF
        if _crc8(value, 32) != crc:
            return None
        return cls((value >> 28, (value >> 22) & 63, (value >> 16) & 63), value & 0xFFFF)

    def __str__(self) -> str:
        text = "livefake {}.{}.{}".format(*self.version)
        return text + (f", user id {self.user_id}" if self.user_id else "")


@dataclass(frozen=True)
class WatermarkKey:
    """Which frequencies (u, v cycles per tile) carry the sync and which the bits, and their phases."""

    freqs: np.ndarray  # (K, 2) int: u, v; the first ``n_sync`` are the sync
    phases: np.ndarray  # (K,) float64
    n_sync: int
    bit_of: np.ndarray  # (K - n_sync,) int: which payload bit each other frequency carries

    @classmethod
    def create(cls, seed: int = SEED) -> WatermarkKey:
        rng = np.random.default_rng(seed)
        r0, r1 = RING
        n = int(r1)
        freqs = np.array([(u, v) for v in range(n + 1) for u in range(-n, n + 1)
                          if (v > 0 or u > 0) and r0 <= math.hypot(u, v) <= r1])
        # A random deal (tried: dealing by radius so every bit spans the band read worse on the clips).
        freqs = freqs[rng.permutation(len(freqs))]
        n_sync = round(len(freqs) * SYNC_SHARE)
        return cls(freqs, rng.uniform(0, 2 * np.pi, len(freqs)), n_sync,
                   np.arange(len(freqs) - n_sync) % PAYLOAD_BITS)

    def phases_for(self, bits: np.ndarray) -> np.ndarray:
        """The phase of every frequency for a payload: the sync's own, the bits' flipped for a 0."""
        flips = np.concatenate([np.zeros(self.n_sync), np.pi * (1 - np.asarray(bits, np.float64)[self.bit_of])])
        return self.phases + flips


@lru_cache(maxsize=1)
def livefake_key() -> WatermarkKey:
    return WatermarkKey.create()


def cb_pattern(height: int, width: int, bits: np.ndarray, key: WatermarkKey | None = None) -> np.ndarray:
    """(height, width) float32, unit RMS: the Cb pattern for a frame of this size, at the frame's own scale."""
    key = key or livefake_key()
    scale = CANONICAL_HEIGHT / height  # pixel centres in canonical pixels
    ys = (np.arange(height) + 0.5) * scale - 0.5
    xs = (np.arange(width) + 0.5) * scale - 0.5
    u, v = key.freqs[:, 0], key.freqs[:, 1]
    r1 = int(RING[1])
    coeffs = np.zeros((r1 + 1, 2 * r1 + 1), np.complex128)
    gain = np.where(np.arange(len(key.freqs)) < key.n_sync, 1.0, BITS_GAIN)
    coeffs[v, u + r1] = gain * np.exp(1j * key.phases_for(bits)) * (np.hypot(u, v) / RING[1]) ** TILT
    rows = np.exp(2j * np.pi * np.outer(ys, np.arange(r1 + 1)) / TILE)
    cols = np.exp(2j * np.pi * np.outer(np.arange(-r1, r1 + 1), xs) / TILE)
    pattern = np.real(rows @ coeffs @ cols)
    return (pattern / pattern.std()).astype(np.float32)


def visibility_gain(reference: np.ndarray) -> np.ndarray:
    """(H, W) float32: how strong the mark may be at each pixel of frames like ``reference`` ((H, W, 3)
    uint8 RGB): weak on flat areas, strong on busy ones (see :data:`MASK_LEVEL`)."""
    h, w = reference.shape[:2]
    luma = cv2.cvtColor(np.ascontiguousarray(reference), cv2.COLOR_RGB2GRAY).astype(np.float32)
    small = cv2.resize(luma, (max(1, round(w * CANONICAL_HEIGHT / h)), CANONICAL_HEIGHT), interpolation=cv2.INTER_AREA)
    mean = cv2.blur(small, (9, 9))
    deviation = np.sqrt(np.maximum(cv2.blur(small * small, (9, 9)) - mean * mean, 0))
    gain = cv2.GaussianBlur(np.clip(deviation / MASK_LEVEL, *MASK_RANGE), (0, 0), 4)
    return cv2.resize(gain, (w, h), interpolation=cv2.INTER_LINEAR)


def frame_tensor(frame: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``frame`` as a tensor sharing its memory, after checking it is a contiguous (H, W, 3) uint8 frame."""
    pixels = torch.from_numpy(frame) if isinstance(frame, np.ndarray) else frame
    if pixels.dtype != torch.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3 or not pixels.is_contiguous():
        raise ValueError(f"expected a contiguous (H, W, 3) uint8 frame, got {tuple(pixels.shape)} {pixels.dtype}")
    return pixels


class Embedder:
    """Adds the mark to (H, W, 3) uint8 RGB frames, numpy arrays or torch tensors on any device, in place.

    The per-channel change is fixed for a frame size: shaped once by a reference frame of that size
    (:meth:`prepare`; by default the first frame marked at that size, for livefake the source photo,
    which is every output frame's background), then kept as three uint8 tensors (what to add, what to
    take away, and 255 minus the first) and applied with saturating uint8 arithmetic.
    ``psnr_db``: the most energy the mark may have, as the PSNR of a marked frame against the unmarked
    one (a flat frame gets less; clipping only lowers it).
    """

    def __init__(self, payload: Payload, psnr_db: float = DEFAULT_PSNR_DB, key: WatermarkKey | None = None) -> None:
        self.payload = payload
        self.psnr_db = psnr_db
        self.key = key or livefake_key()
        self._bits = payload.to_bits()
        self._tables: dict[tuple[int, int, str], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._references: dict[tuple[int, int], np.ndarray] = {}

    def delta(self, reference: np.ndarray, quiet: np.ndarray | None = None) -> np.ndarray:
        """(H, W, 3) int16: the change made to each channel of frames like ``reference``; where ``quiet``
        ((H, W) float32 in [0, 1]) is 1 the mark is held to :data:`QUIET_KEEP` of its strength."""
        height, width = reference.shape[:2]
        unit = cb_pattern(height, width, self._bits, self.key)[..., None] * CB_IN_RGB
        target_mse = 255.0 ** 2 / 10 ** (self.psnr_db / 10)
        unit *= math.sqrt(target_mse / float(np.mean(unit ** 2)))
        local = visibility_gain(reference)
        floor = MASK_RANGE[0]
        keep = 1.0 if quiet is None else (1.0 - (1.0 - QUIET_KEEP) * np.clip(quiet, 0.0, 1.0))[..., None]

        def energy(boost: float) -> float:  # the busy part above the floor boosted, flat areas never
            return float(np.mean(np.round(unit * (floor + (local - floor) * boost)[..., None] * keep) ** 2))

        low, high = 1.0, MAX_BOOST
        if energy(1.0) < target_mse:  # energy to spare (a flat-heavy picture): give it to the busy parts
            for _ in range(10):
                middle = (low + high) / 2
                low, high = (middle, high) if energy(middle) <= target_mse else (low, middle)
        boost = low
        shaped = unit * (floor + (local - floor) * boost)[..., None] * keep
        gain = 1.0
        for _ in range(4):  # at most the PSNR asked for, rounding to whole levels included
            mse = float(np.mean(np.round(shaped * gain) ** 2))
            gain = min(1.0, gain * math.sqrt(target_mse / max(mse, 1e-9)))
        return np.round(shaped * gain).astype(np.int16)

    def prepare(self, reference: np.ndarray, quiet: np.ndarray | None = None) -> None:
        """Shape the mark for frames of ``reference``'s size by ``reference`` ((H, W, 3) uint8 RGB), held
        weak where ``quiet`` is (see :meth:`delta`)."""
        height, width = reference.shape[:2]
        self._references[(height, width)] = self.delta(reference, quiet)
        self._tables = {k: v for k, v in self._tables.items() if k[:2] != (height, width)}

    def prepared(self, height: int, width: int) -> bool:
        return (height, width) in self._references

    def _tables_for(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        height, width = pixels.shape[:2]
        key = (height, width, str(pixels.device))
        if key not in self._tables:
            if (height, width) not in self._references:
                self.prepare(pixels.cpu().numpy())
            delta = self._references[(height, width)]
            add = torch.from_numpy(np.clip(delta, 0, 255).astype(np.uint8)).to(pixels.device)
            sub = torch.from_numpy(np.clip(-delta, 0, 255).astype(np.uint8)).to(pixels.device)
            self._tables[key] = (add, 255 - add, sub)
        return self._tables[key]

    def mark_(self, frame: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Mark ``frame`` ((H, W, 3) uint8 RGB, C-contiguous) in place and return it."""
        pixels = frame_tensor(frame)
        add, cap, sub = self._tables_for(pixels)
        # clip(frame + add - sub) in uint8: min(frame, 255 - add) + add never wraps; max(x, sub) - sub neither.
        torch.minimum(pixels, cap, out=pixels)
        pixels.add_(add)
        torch.maximum(pixels, sub, out=pixels)
        pixels.sub_(sub)
        return frame


# ----------------------------------------------------------------------------------------------- detection


def canonical_residual(rgb: np.ndarray) -> np.ndarray:
    """(360, W') float32: a frame's Cb at the canonical height, its slow variations taken out."""
    pixels = np.asarray(rgb, np.float32)
    cb = pixels @ np.array([-0.168736, -0.331264, 0.5], np.float32)
    h, w = cb.shape
    width = max(1, round(w * CANONICAL_HEIGHT / h))
    interpolation = cv2.INTER_AREA if h > CANONICAL_HEIGHT else cv2.INTER_LINEAR
    cb = cv2.resize(cb, (width, CANONICAL_HEIGHT), interpolation=interpolation)
    return cb - cv2.GaussianBlur(cb, (0, 0), 20)


def _fold_spectrum(residual: np.ndarray) -> np.ndarray:
    """(TILE, TILE) complex: the 2-D FFT of the tile-fold of ``residual`` (partial tiles averaged in)."""
    h, w = residual.shape
    ny, nx = -(-h // TILE), -(-w // TILE)
    padded = np.zeros((ny * TILE, nx * TILE), np.float32)
    padded[:h, :w] = residual
    count = np.outer(np.bincount(np.arange(h) % TILE, minlength=TILE), np.bincount(np.arange(w) % TILE, minlength=TILE))
    fold = padded.reshape(ny, TILE, nx, TILE).sum(axis=(0, 2)) / np.maximum(count, 1)
    return np.fft.fft2(fold)


def _phasors(spectrum: np.ndarray, key: WatermarkKey) -> np.ndarray:
    """Unit phasors of the key's frequencies in a :func:`_fold_spectrum`."""
    picked = spectrum[key.freqs[:, 1] % TILE, key.freqs[:, 0] % TILE]
    return picked / np.maximum(np.abs(picked), 1e-12)


def _sync_scores(phasors: np.ndarray, key: WatermarkKey) -> np.ndarray:
    """(TILE, TILE) z-scores of the sync at every shift (dy, dx) of the tile."""
    grid = np.zeros((TILE, TILE), np.complex128)
    s = key.n_sync
    grid[key.freqs[:s, 1] % TILE, key.freqs[:s, 0] % TILE] = phasors[:s] * np.exp(-1j * key.phases[:s])
    return np.fft.ifft2(grid).real * (TILE * TILE) / math.sqrt(s / 2)


def _normal_tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


@dataclass(frozen=True)
class Reading:
    """What the detector found in one frame or window: the sync's z-score, the bits' agreement (chi-square,
    40 degrees of freedom), and the p-value of both together (the chance that an unmarked frame scores as
    high at any of the shifts and scales tried); the scale and shift it found, the bits read with their soft
    values, and the payload if its CRC holds."""

    z: float
    chi2: float
    p_value: float
    scale: float
    shift: tuple[int, int]
    mirrored: bool
    bits: np.ndarray
    soft: np.ndarray
    payload: Payload | None

    def marked(self, alpha: float = ALPHA) -> bool:
        return self.p_value <= alpha


def _ring_weights(aligned: np.ndarray, key: WatermarkKey) -> np.ndarray:
    """How much to trust each frequency's phase: the sync's mean agreement in its band of frequencies
    (codecs keep some bands better than others; a band where the sync is lost adds only noise)."""
    radius = np.hypot(key.freqs[:, 0], key.freqs[:, 1])
    band = np.floor((radius - RING[0]) / 2).astype(int)
    weights = np.zeros(len(radius))
    for b in np.unique(band):
        sync = (band[:key.n_sync] == b)
        weights[band == b] = max(float(aligned[:key.n_sync][sync].mean()), 0.0) if sync.any() else 0.0
    return weights


def align(residual: np.ndarray, keys: list[WatermarkKey],
          scales: np.ndarray) -> list[tuple[float, float, int, int, np.ndarray]]:
    """For each key, the best sync z-score over every shift and each of ``scales``, with that scale, the
    shift (dy, dx) and the phasors there. One fold and FFT per scale serves all keys."""
    h, w = residual.shape
    best: list[tuple[float, float, int, int, np.ndarray] | None] = [None] * len(keys)
    for scale in scales:
        size = (max(TILE // 4, round(w / scale)), max(TILE // 4, round(h / scale)))
        resized = residual if abs(scale - 1) < 1e-9 else cv2.resize(residual, size, interpolation=cv2.INTER_LINEAR)
        spectrum = _fold_spectrum(resized)
        for k, key in enumerate(keys):
            phasors = _phasors(spectrum, key)
            scores = _sync_scores(phasors, key)
            i = int(np.argmax(scores))
            found = best[k]
            if found is None or scores.flat[i] > found[0]:
                dy, dx = divmod(i, TILE)
                best[k] = (float(scores.flat[i]), float(scale), dy, dx, phasors)
    return [b for b in best if b is not None]


def _chi2_tail_even(x: float, dof: int) -> float:
    """P(chi-square with an even ``dof`` >= x), exactly: exp(-x/2) * sum_{i < dof/2} (x/2)^i / i!."""
    half, term, total = x / 2, 1.0, 1.0
    for i in range(1, dof // 2):
        term *= half / i
        total += term
    return min(1.0, math.exp(-half) * total)


def p_value(z: float, chi2: float, n_searched: int) -> float:
    """The chance that an unmarked frame scores at least this high.

    Two independent parts: the sync's best z over every shift and ``n_searched`` scales and mirrorings
    (Bonferroni over them: conservative), and, where the sync points, each bit's agreement: the sum of its
    frequencies' cosines is zero-mean with variance n/2 whatever the bit, as the key's phases are random,
    so their squares add up to at most a chi-square with 40 degrees of freedom in the tail (conservative:
    a sum of 4-5 bounded terms has lighter tails than a normal one). The key's phases at the bits'
    frequencies are independent of those at the sync's, whichever shift the sync picked, so Fisher's
    method joins the two.
    """
    p_sync = min(1.0, TILE * TILE * n_searched * _normal_tail(z))
    p_bits = _chi2_tail_even(chi2, PAYLOAD_BITS)
    fisher = -2 * (math.log(max(p_sync, 1e-300)) + math.log(max(p_bits, 1e-300)))
    return _chi2_tail_even(fisher, 4)


def bits_chi2(aligned: np.ndarray, key: WatermarkKey) -> float:
    """The bits' agreement at an alignment: sum over bits of (sum of cosines)^2 / (count / 2)."""
    sums = np.bincount(key.bit_of, aligned[key.n_sync:], minlength=PAYLOAD_BITS)
    counts = np.bincount(key.bit_of, minlength=PAYLOAD_BITS)
    return float(np.sum(sums ** 2 / np.maximum(counts / 2, 1e-9)))


def aligned_cosines(phasors: np.ndarray, key: WatermarkKey, dy: int, dx: int) -> np.ndarray:
    """Each frequency's agreement with the key's phase (bits as if all were 1) at the shift (dy, dx)."""
    u, v = key.freqs[:, 0], key.freqs[:, 1]
    return np.real(phasors * np.exp(-1j * key.phases) * np.exp(2j * np.pi * (u * dx + v * dy) / TILE))


def read_mark(residual: np.ndarray, key: WatermarkKey | None = None, scales: np.ndarray | None = None,
              *, mirrored: bool = True, searched: int | None = None) -> Reading:
    """Look for the mark in a :func:`canonical_residual` (or a mean of several), at every shift and at each
    of ``scales`` (frame height over marked height; default :data:`SCALES`), and in the mirror image too
    (``mirrored``: a self-view or a recording of one). ``searched``: how many scales and mirrorings the
    p-value accounts for, when ``scales`` was itself picked from a wider search (default: those tried here).
    """
    key = key or livefake_key()
    scales = SCALES if scales is None else np.atleast_1d(scales)
    views = [residual, np.ascontiguousarray(residual[:, ::-1])] if mirrored else [residual]
    found = [align(view, [key], scales)[0] for view in views]
    flipped = int(np.argmax([f[0] for f in found]))
    z, scale, dy, dx, phasors = found[flipped]
    aligned = aligned_cosines(phasors, key, dy, dx)
    chi2 = bits_chi2(aligned, key)
    soft = np.bincount(key.bit_of, (aligned * _ring_weights(aligned, key))[key.n_sync:], minlength=PAYLOAD_BITS)
    bits = (soft > 0).astype(np.uint8)
    p = p_value(z, chi2, searched or len(scales) * len(views))
    payload = Payload.from_bits(bits) if p <= ALPHA and np.any(soft != 0) else None
    return Reading(z, chi2, p, scale, (dy, dx), bool(flipped), bits, soft, payload)
