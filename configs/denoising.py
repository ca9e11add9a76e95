"""Denoising autoencoders: reconstruct the clean x from a corrupted x~ (Vincent et al., ICML 2008, JMLR 2010).

One sigmoid hidden layer 784-500 with a Bernoulli (cross-entropy) decoder, as in Vincent et al. (untied here, so
that the plain autoencoder of configs/contractive.py:plain is the same network). Corruption levels follow the
JMLR paper's ranges: Gaussian sigma = 0.3, masking and salt-and-pepper nu = 0.25 (the 25% of its Table 3).
"emphasized" is masking with the emphasized criterion: alpha = 1 on corrupted pixels, beta = 0.5 on the rest.

  python launch.py --config=configs/denoising.py:masking              # 25% masking noise
  python launch.py --config=configs/denoising.py:gaussian             # additive N(0, 0.3^2)
  python launch.py --config=configs/denoising.py:salt_and_pepper      # 25% of pixels set to 0 or 1
  python launch.py --config=configs/denoising.py:emphasized           # masking, emphasized DAE
  python launch.py --config=configs/denoising.py:masking,quick --config.data_dir=/tmp/tfds_dev   # ~1 min CPU
  python launch.py --config=configs/denoising.py:masking,runlocal --workdir=/tmp/dae   # seconds, smoke test

Variants (comma separated): one of "masking" (default), "gaussian", "salt_and_pepper", "emphasized", or "plain"
(no corruption, the reference); optional "quick", "runlocal". Writes the `denoising` report (denoising error and
PSNR on the test set for each corruption, corrupted / denoised / clean images) besides the main job's outputs.
"""

import ml_collections

from configs import contractive
from configs import variants as variants_lib

CORRUPTIONS = ("masking", "gaussian", "salt_and_pepper", "emphasized", "plain")
VARIANTS = (*CORRUPTIONS, "quick", "runlocal")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    variants = variants_lib.parse(arg, VARIANTS)
    name = variants_lib.one_of(variants, CORRUPTIONS, default="masking")

    # The one-layer sigmoid network and training schedule of the contractive family, without its penalty.
    base = ",".join(["plain", *(v for v in variants if v in ("quick", "runlocal"))])
    c = contractive.get_config(base)
    c.unlock()
    c.analysis.reports = "denoising"
    if name == "emphasized":
        c.corruption.name = "masking"
        c.corruption.emphasis_alpha = 1.0
        c.corruption.emphasis_beta = 0.5
    elif name != "plain":
        c.corruption.name = name
    return c.lock()
