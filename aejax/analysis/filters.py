"""Filter banks of patch models: an orientation-selectivity score and filter-grid figures.

Orientation selectivity of one filter w [h, w] is read from its 2-D power spectrum P(k) = |FFT(w)|^2 over the
non-zero spatial frequencies k = (k_x, k_y) in the disc |k| <= 1/2 cycle per pixel, with theta_k = atan2(k_y,
k_x). An orientation is an axis, so angles are doubled (P(k) = P(-k) for a real filter, and k, -k share a
doubled angle); the score is the mean resultant length of the doubled angles weighted by power,

    S(w) = | sum_k P(k) exp(2 i theta_k) | / sum_k P(k)  in [0, 1],

i.e. 1 - circular variance (Mardia & Jupp 2000, Sec. 2.3.1; the doubled-angle orientation index used for V1
cells, e.g. Ringach, Shapley & Hawken 2002). A grating or Gabor has its power at +-k0, so S ~ 1; an isotropic
blob, a centre-surround filter or white noise spread power over all orientations, so S is small (white noise
gives S ~ 1/sqrt(number of frequencies)). The disc makes the frequency set symmetric under 90 degree rotations,
so the square grid itself favours no orientation. A bank's score is the mean over its filters; Gaussian random
filters of the same size are the baseline.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _check_bank(filters: np.ndarray) -> np.ndarray:
    filters = np.asarray(filters, np.float64)
    if filters.ndim != 3 or min(filters.shape) < 1:
        raise ValueError(f"Expected a filter bank [F, h, w], got shape {filters.shape}.")
    return filters


def orientation_selectivity(filters: np.ndarray) -> np.ndarray:
    """Per-filter orientation selectivity S (module docstring).

    Args:
      filters: [F, h, w] filter bank (any scale; the mean of each filter is ignored, as is k = 0).

    Returns:
      [F] scores in [0, 1]; 0 for an all-zero or constant filter.

    Raises:
      ValueError: if filters is not [F, h, w].
    """
    filters = _check_bank(filters)
    _, h, w = filters.shape
    power = np.abs(np.fft.fft2(filters, axes=(1, 2))) ** 2  # [F, h, w]
    ky, kx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")  # [h, w] cycles per pixel
    radius = np.hypot(kx, ky)
    keep = (radius > 0) & (radius <= 0.5)
    phase = np.exp(2j * np.arctan2(ky, kx))[keep]  # [M] doubled-angle unit vectors
    p = power[:, keep]  # [F, M]
    total = p.sum(axis=1)
    resultant = np.abs(p @ phase)
    return np.where(total > 0, resultant / np.maximum(total, 1e-300), 0.0)


def selectivity_score(filters: np.ndarray) -> float:
    """Mean orientation selectivity of a bank [F, h, w] (see `orientation_selectivity`)."""
    return float(orientation_selectivity(filters).mean())


def random_filters(num: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """[num, height, width] i.i.d. standard Gaussian filters, the baseline bank."""
    return np.random.default_rng(seed).standard_normal((num, height, width))


def columns_as_filters(matrix: np.ndarray, patch_shape: tuple[int, ...]) -> np.ndarray:
    """Columns of a [n, K] matrix (dictionary atoms, encoder kernel columns) as [K, h, w] filters.

    Args:
      matrix: [n, K] with n = prod(patch_shape).
      patch_shape: (h, w) or (h, w, 1).

    Raises:
      ValueError: if n != prod(patch_shape) or the patch has more than one channel.
    """
    matrix = np.asarray(matrix)
    h, w = patch_shape[:2]
    if matrix.ndim != 2 or matrix.shape[0] != int(np.prod(patch_shape)) or np.prod(patch_shape[2:]) != 1:
        raise ValueError(f"Expected a [{h * w}, K] matrix for {patch_shape} patches, got {matrix.shape}.")
    return matrix.T.reshape(-1, h, w)


def _draw_grid(fig, spec, filters: np.ndarray, title: str, ncols: int) -> None:
    """Draws filters in a grid of sub-axes of `spec`, each scaled symmetrically about 0 (grey = 0)."""
    nrows = int(np.ceil(len(filters) / ncols))
    grid = spec.subgridspec(nrows + 1, ncols, height_ratios=[0.6] + [1] * nrows, wspace=0.05, hspace=0.05)
    head = fig.add_subplot(grid[0, :])
    head.axis("off")
    head.text(0.5, 0.2, title, ha="center", va="bottom", fontsize=9)
    for i, f in enumerate(filters):
        ax = fig.add_subplot(grid[1 + i // ncols, i % ncols])
        scale = max(np.abs(f).max(), 1e-12)
        ax.imshow(f, cmap="gray", vmin=-scale, vmax=scale, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])


def plot_filter_panels(panels: dict[str, np.ndarray], path: str, *, max_filters: int = 64, ncols: int = 8) -> None:
    """One grid of filters per bank, side by side, titled by name (e.g. "PSD dictionary, S=0.61").

    Args:
      panels: name -> [F, h, w] filter bank; the first `max_filters` filters of each are drawn.
      path: output image path (PNG).
      max_filters: filters drawn per bank.
      ncols: columns of each grid.

    Raises:
      ValueError: if panels is empty or a bank is not [F, h, w].
    """
    if not panels:
        raise ValueError("No filter banks to draw.")
    banks = {name: _check_bank(f)[:max_filters] for name, f in panels.items()}
    nrows = max(int(np.ceil(len(f) / ncols)) for f in banks.values())
    fig = plt.figure(figsize=(2.8 * len(banks), 0.36 * (nrows + 1) + 0.4))
    outer = fig.add_gridspec(1, len(banks), wspace=0.15)
    for spec, (name, bank) in zip(outer, banks.items(), strict=True):
        _draw_grid(fig, spec, bank, name, ncols)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
