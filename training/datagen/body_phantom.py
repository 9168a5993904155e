"""A procedural body CT phantom: analytic thorax and abdomen slices with random anatomy, in HU.

In the tradition of the FORBILD thorax and abdomen phantoms (Sourbelle et al., FORBILD, Erlangen; the
Shepp-Logan idea of a body built from ellipses): the outline, a subcutaneous fat layer, the muscle wall,
lungs with vessels, heart, aorta, spine and ribs (thorax); liver, spleen, kidneys, psoas, aorta and
vena cava, bowel loops with gas, fluid or oral contrast (abdomen). Every slice draws its own patient:
size, fat, organ size and position, contrast phase and bowel content vary, so the model sees body CT of
many shapes rather than one. Values are textbook HU (unenhanced and portal-venous): fat -100, muscle
50, liver 55 (110 enhanced), kidney 35 (cortex 170 enhanced), blood 40 (aorta 180-320 enhanced),
trabecular bone 250, cortical bone 800, lung -850.

The slice is noise-free (clean anatomy, with a gentle texture and the edge blur of a clinical kernel);
the scanner's own noise is added in the projection domain by ``native_noise``. It is a simulation: no
beam hardening, no motion, organs as ellipses; the model card says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

log = logging.getLogger(__name__)

REGIONS = ("chest", "abdomen")
GRID = 400  # pixels per side
SPACING_MM = 0.9  # 360 mm field of view: a body CT's display FOV
AIR, FAT, MUSCLE, SKIN, WATER = -1000.0, -100.0, 50.0, 30.0, 10.0
LUNG, BLOOD, LIVER, SPLEEN, KIDNEY = -850.0, 40.0, 55.0, 48.0, 35.0
TRABECULAR, CORTICAL, MARROW_CANAL = 250.0, 800.0, 20.0
TEXTURE_HU, TEXTURE_MM = 5.0, 3.0  # soft-tissue inhomogeneity: real organs are not flat
EDGE_BLUR_MM = 0.5  # the reconstruction kernel's resolution; analytic edges are infinitely sharp


@dataclass(frozen=True)
class Canvas:
    """Pixel-centre coordinates in mm: x to the patient's left (image right), y posterior (image down)."""

    x: np.ndarray
    y: np.ndarray

    @classmethod
    def make(cls, grid: int = GRID, spacing: float = SPACING_MM) -> Canvas:
        c = (np.arange(grid) - (grid - 1) / 2.0) * spacing
        y, x = np.meshgrid(c, c, indexing="ij")
        return cls(x, y)

    def ellipse(self, cx: float, cy: float, ax: float, ay: float, angle_deg: float = 0.0) -> np.ndarray:
        t = np.deg2rad(angle_deg)
        dx, dy = self.x - cx, self.y - cy
        u = dx * np.cos(t) + dy * np.sin(t)
        v = -dx * np.sin(t) + dy * np.cos(t)
        return (u / ax) ** 2 + (v / ay) ** 2 <= 1.0


def phantom_slice(region: str, rng: np.random.Generator, contrast: bool) -> np.ndarray:
    """One random body slice of ``region`` (``chest`` or ``abdomen``) in HU, ``GRID`` square."""
    if region not in REGIONS:
        raise ValueError(f"unknown phantom region {region!r}; expected one of {REGIONS}")
    cv = Canvas.make()
    img = np.full(cv.x.shape, AIR)
    a = rng.uniform(125.0, 172.0)  # half width, mm (250-345 mm wide)
    b = a * rng.uniform(0.62, 0.8) if region == "chest" else a * rng.uniform(0.68, 0.88)
    fat = rng.uniform(4.0, 32.0)  # subcutaneous fat, mm
    body = cv.ellipse(0, 0, a, b)
    img[body] = SKIN
    img[cv.ellipse(0, 0, a - 2, b - 2)] = FAT
    ia, ib = a - 2 - fat, b - 2 - fat  # inside the fat: the muscle wall
    img[cv.ellipse(0, 0, ia, ib)] = MUSCLE
    ca, cb = ia - rng.uniform(6, 14), ib - rng.uniform(6, 14)  # the cavity
    cavity = cv.ellipse(0, 0, ca, cb)
    if region == "chest":
        _chest(cv, img, rng, ca, cb, contrast)
    else:
        _abdomen(cv, img, rng, ca, cb, contrast, cavity)
    _spine(cv, img, rng, cb)
    texture = gaussian_filter(rng.standard_normal(img.shape), TEXTURE_MM / SPACING_MM)
    texture *= TEXTURE_HU / max(float(texture.std()), 1e-9)
    tissue = (img > -200) & (img < 200)
    img = np.where(tissue, img + texture, img)
    return gaussian_filter(img, EDGE_BLUR_MM / SPACING_MM).astype(np.float32)


def _blood(rng: np.random.Generator, contrast: bool, lo: float = 160.0, hi: float = 320.0) -> float:
    return float(rng.uniform(lo, hi)) if contrast else BLOOD + float(rng.uniform(-5, 5))


def _chest(cv: Canvas, img: np.ndarray, rng: np.random.Generator, ca: float, cb: float,
           contrast: bool) -> None:
    img[cv.ellipse(0, 0, ca, cb)] = FAT + 40.0  # mediastinal fat and connective tissue
    lung_a, lung_b = ca * rng.uniform(0.40, 0.47), cb * rng.uniform(0.78, 0.9)
    for side in (-1, 1):
        cx = side * ca * rng.uniform(0.48, 0.55)
        lung = cv.ellipse(cx, rng.uniform(-0.05, 0.05) * cb, lung_a, lung_b, side * rng.uniform(-8, 8))
        # Dependent (posterior) lung is denser: a gentle gravity gradient, as in a supine patient.
        img[lung] = LUNG + rng.uniform(-40, 40) + 60.0 * (cv.y[lung] / cb + 1) / 2
        for _ in range(int(rng.integers(12, 30))):  # pulmonary vessels, seen end-on
            vx = cx + rng.uniform(-0.8, 0.8) * lung_a
            vy = rng.uniform(-0.8, 0.8) * lung_b
            r = rng.uniform(1.2, 4.0)
            vessel = cv.ellipse(vx, vy, r, r * rng.uniform(0.8, 1.6), rng.uniform(0, 180)) & lung
            img[vessel] = _blood(rng, contrast, 120, 260)
    hx, hy = ca * rng.uniform(0.0, 0.15), -cb * rng.uniform(0.05, 0.25)
    heart = cv.ellipse(hx, hy, ca * rng.uniform(0.28, 0.38), cb * rng.uniform(0.35, 0.48), rng.uniform(20, 45))
    img[heart] = 45.0  # myocardium
    if contrast:  # opacified chambers inside the muscle
        img[cv.ellipse(hx, hy, ca * 0.2, cb * 0.28, 30) & heart] = _blood(rng, True)
    r = rng.uniform(11, 16)
    img[cv.ellipse(ca * 0.12, cb * rng.uniform(0.45, 0.55), r, r)] = _blood(rng, contrast)  # descending aorta
    img[cv.ellipse(-ca * 0.05, -cb * 0.55, 4 * r / 3, 0.6 * r)] = _blood(rng, contrast)  # ascending / arch
    img[cv.ellipse(0, -cb - rng.uniform(3, 8), 14, 6)] = TRABECULAR  # sternum
    for t in np.deg2rad(np.linspace(-150, 150, int(rng.integers(8, 13)))):  # ribs along the chest wall
        rx, ry = (ca + 3) * np.sin(t), -(cb + 3) * np.cos(t)
        img[cv.ellipse(rx, ry, rng.uniform(4, 7), rng.uniform(3, 5), np.rad2deg(t))] = CORTICAL
        img[cv.ellipse(rx, ry, 2.5, 1.8, np.rad2deg(t))] = TRABECULAR


def _abdomen(cv: Canvas, img: np.ndarray, rng: np.random.Generator, ca: float, cb: float, contrast: bool,
             cavity: np.ndarray) -> None:
    img[cavity] = FAT + rng.uniform(0, 30)  # intra-abdominal fat
    level = rng.choice(("upper", "mid", "lower"))
    enh = 55.0 if contrast else 0.0  # portal-venous enhancement of parenchyma
    if level in ("upper", "mid"):
        scale = 1.0 if level == "upper" else rng.uniform(0.35, 0.6)
        liver = cv.ellipse(-ca * 0.38, -cb * 0.05, ca * 0.55 * scale, cb * 0.7 * scale, rng.uniform(-20, 20))
        img[liver & cavity] = LIVER + enh + rng.uniform(-8, 8)
        for _ in range(int(rng.integers(3, 9))):  # hepatic and portal veins
            vx, vy = -ca * 0.38 + rng.uniform(-0.6, 0.6) * ca * 0.5 * scale, rng.uniform(-0.5, 0.5) * cb * scale
            r = rng.uniform(2, 6)
            img[cv.ellipse(vx, vy, r, r) & liver & cavity] = (LIVER + 80 if contrast else LIVER - 15)
    if level == "upper":
        spleen = cv.ellipse(ca * 0.62, cb * 0.25, ca * 0.2, cb * 0.32, rng.uniform(20, 50))
        img[spleen & cavity] = SPLEEN + enh * 1.2
        stomach = cv.ellipse(ca * 0.3, -cb * 0.35, ca * rng.uniform(0.15, 0.3), cb * rng.uniform(0.15, 0.3))
        img[stomach & cavity] = MUSCLE
        img[cv.ellipse(ca * 0.3, -cb * 0.35, ca * 0.12, cb * 0.12) & stomach] = _content(rng)
    if level == "mid":
        for side in (-1, 1):
            kx, ky = side * ca * rng.uniform(0.32, 0.42), cb * rng.uniform(0.35, 0.5)
            kidney = cv.ellipse(kx, ky, ca * 0.12, cb * 0.2, side * rng.uniform(20, 40))
            img[kidney & cavity] = KIDNEY + (135.0 if contrast else 0.0)
            img[cv.ellipse(kx, ky, ca * 0.06, cb * 0.1, 0) & kidney] = KIDNEY + (85.0 if contrast else 0.0)
    n_loops = {"upper": 3, "mid": 7, "lower": 11}[str(level)]
    for _ in range(int(rng.integers(n_loops // 2 + 1, n_loops + 2))):  # bowel loops: wall and content
        bx, by = rng.uniform(-0.6, 0.6) * ca, rng.uniform(-0.75, 0.2) * cb
        r = rng.uniform(8, 22)
        loop = cv.ellipse(bx, by, r, r * rng.uniform(0.6, 1.0), rng.uniform(0, 180)) & cavity
        img[loop] = MUSCLE - 10 + enh * 0.4
        lumen = cv.ellipse(bx, by, r - 2.5, (r - 2.5) * 0.8) & loop
        img[lumen] = _content(rng)
    for side in (-1, 1):  # psoas muscles beside the spine
        img[cv.ellipse(side * ca * 0.18, cb * 0.62, ca * 0.09, cb * 0.13, side * 20) & cavity] = MUSCLE
    r = rng.uniform(9, 13)
    img[cv.ellipse(ca * 0.04, cb * 0.5, r, r)] = _blood(rng, contrast, 150, 250)  # aorta
    img[cv.ellipse(-ca * 0.12, cb * 0.48, r * 1.2, r * 0.8)] = _blood(rng, contrast, 110, 170)  # vena cava


def _content(rng: np.random.Generator) -> float:
    """Bowel content: gas, fluid or positive oral contrast."""
    kind = rng.choice(("gas", "fluid", "oral_contrast"), p=(0.45, 0.35, 0.2))
    return {"gas": AIR + 20.0, "fluid": WATER, "oral_contrast": float(rng.uniform(200, 450))}[str(kind)]


def _spine(cv: Canvas, img: np.ndarray, rng: np.random.Generator, cb: float) -> None:
    r = rng.uniform(15, 21)
    cy = cb - r * rng.uniform(0.9, 1.3)
    img[cv.ellipse(0, cy, r, r * 0.85)] = CORTICAL  # vertebral body: cortex around trabecular bone
    img[cv.ellipse(0, cy, r - 2.0, r * 0.85 - 2.0)] = TRABECULAR + rng.uniform(-60, 60)
    img[cv.ellipse(0, cy + r + 9, 11, 8)] = CORTICAL  # posterior arch
    img[cv.ellipse(0, cy + r + 8, 7, 6)] = MARROW_CANAL  # spinal canal
    for side in (-1, 1):
        img[cv.ellipse(side * 14, cy + r + 14, 10, 4, side * 25)] = CORTICAL * 0.8  # laminae


def phantom_volume(region: str, n: int, seed: int, contrast: bool) -> np.ndarray:
    """``n`` independent patients' slices (float32 [n, GRID, GRID]); slice i depends on (seed, i) only."""
    out = np.empty((n, GRID, GRID), dtype=np.float32)
    for i in range(n):
        out[i] = phantom_slice(region, np.random.default_rng(np.random.SeedSequence([seed, i])), contrast)
    return out
