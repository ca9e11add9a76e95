"""SAEs on the language model's activations: the downstream-loss splice, the text spans, and the "sae" job's checks
before compute. References: numpy cross-entropies of the LM's own logits, brute-force argsorts."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import jobs
from aejax.analysis import sae_downstream, sae_metrics
from aejax.byte_lm import ByteLM
from aejax.models.sae_base import SparseOutput
from configs import sae as sae_config

LM = ByteLM(context=16, d_model=8, n_layers=2, n_heads=2, d_mlp=16)


class _Fixed(nn.Module):
    """A stand-in SAE whose reconstruction is `scale * x` (1: exact, 0: zero ablation)."""

    scale: float

    @nn.compact
    def __call__(self, x):
        return SparseOutput(decoder_output=self.scale * x, code=x, input=x)


def _numpy_nll(logits: np.ndarray, tokens: np.ndarray) -> float:
    logits = logits[:, :-1].astype(np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    target = tokens[:, 1:]
    return float(-np.mean(np.take_along_axis(logp, target[..., None], -1)))


@pytest.fixture(scope="module")
def lm_and_tokens():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 256, size=(10, 16)).astype(np.uint8)
    variables = jax.device_get(LM.init(jax.random.key(0), jnp.asarray(tokens, jnp.int32)))
    return variables, tokens


@pytest.mark.parametrize("layer", ["embed", "block_0", "block_1"])
def test_splice_is_clean_for_an_exact_reconstruction_and_zero_ablation_for_a_zero_one(lm_and_tokens, layer):
    variables, tokens = lm_and_tokens
    clean_ref = _numpy_nll(np.asarray(LM.apply(variables, jnp.asarray(tokens, jnp.int32))), tokens)
    h0 = jnp.zeros((len(tokens), tokens.shape[1], LM.d_model))
    zero_ref = _numpy_nll(np.asarray(LM.apply(variables, h0, layer, method="logits_from_residual")), tokens)
    tol = dict(rtol=1e-5, atol=1e-5)  # float32 log-softmax over 256 bytes against float64 numpy
    for scale, spliced_ref in ((1.0, clean_ref), (0.0, zero_ref)):
        ce = sae_downstream.spliced_cross_entropy(LM, variables, tokens, layer, _Fixed(scale), {}, batch_size=4)
        np.testing.assert_allclose(
            [ce["clean"], ce["zero"], ce["spliced"]], [clean_ref, zero_ref, spliced_ref], **tol
        )
        recovered = sae_metrics.loss_recovered(ce["clean"], ce["spliced"], ce["zero"])["loss_recovered"]
        np.testing.assert_allclose(recovered, scale, atol=1e-4)


def test_top_text_spans_are_the_largest_activations_with_their_bytes():
    rng = np.random.default_rng(1)
    windows = np.frombuffer(b"def f(x):\n    return x + 1\n", np.uint8).reshape(1, -1)
    n_rows = windows.shape[1]
    code = np.maximum(rng.normal(size=(n_rows, 3)), 0)
    code[:, 2] = 0  # a latent that never fires has no spans
    example, position = np.zeros(n_rows, np.int64), np.arange(n_rows, dtype=np.int32)
    spans = sae_downstream.top_text_spans(code, example, position, windows, np.array([0, 2]), m=3)
    best = np.argsort(-code[:, 0])[:3]
    assert [a for a, _ in spans[0]] == pytest.approx(code[best, 0].tolist())
    for (_, span), row in zip(spans[0], best, strict=True):
        marked = chr(windows[0, row]).replace("\n", "⏎")
        assert f"[[{marked}]]" in span
    assert spans[2] == []
    assert sae_downstream.text_span(windows[0], 4) == "def [[f]](x):⏎   "  # SPAN_AFTER = 8 bytes after


def test_sae_job_refuses_an_unknown_layer_before_training_the_lm(tmp_path):
    config = sae_config.get_config("runlocal")
    config.activations.lm_workdir = str(tmp_path / "lm")
    config.activations.layer = "block_7"
    with pytest.raises(KeyError, match="block_7.*'embed', 'block_0', 'block_1'"):
        jobs.get_job("sae").train_and_evaluate(config, str(tmp_path / "sae"))
    assert not os.path.exists(tmp_path / "lm")
    assert config.dataset == f"activations:{tmp_path}/lm/activations/block_7"  # the store follows the LM


def test_the_store_variant_reads_any_activation_store_without_the_lm():
    config = sae_config.get_config("store")
    assert config.trainer == "train" and config.get("activations") is None
    assert config.dataset.startswith("activations:") and config.model.n_latents == 2048
    with pytest.raises(ValueError, match="exclude each other"):
        sae_config.get_config("store,mnist")


def test_gao_2024_power_law_fit_and_frontier_interpolation_recover_known_curves():
    from experiments.gao_2024 import run as gao

    widths = np.array([256, 512, 1024, 2048])
    a, b = gao.power_law(widths, 3.0 * widths**-0.25)
    np.testing.assert_allclose([a, b], [3.0, -0.25], rtol=1e-9)
    points = [(8.0, 0.4), (32.0, 0.2)]  # linear in log L0: 16 is halfway
    assert gao.frontier_fvu_at(points, 16.0) == pytest.approx(0.3)
    assert gao.frontier_fvu_at(points, 64.0) is None
