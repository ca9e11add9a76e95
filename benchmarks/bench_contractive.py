"""Cost of the contractive penalty per train step, by method, relative to a plain autoencoder step.

  python benchmarks/bench_contractive.py [--steps 5] [--batch 128] [--budget 15] [--side 28] [--width 1.0]

One jitted step = value_and_grad of (Bernoulli reconstruction NLL + 0.1 * contractive penalty) and
an optax Adam update, on random MNIST-shaped data [B, 28, 28, 1]. Encoders: Hinton & Salakhutdinov's
784-1000-500-250-30 (sigmoid hidden units, linear code; undercomplete, so "auto" = jacrev) and a
one-layer 784-1000 sigmoid encoder (overcomplete, so "auto" = jacfwd; the closed form applies).
Each row: one compile + warm-up step, then up to --steps timed steps (fewer when --budget seconds
run out), median seconds per step. Prints a markdown table. Run by hand on an idle machine.
--side (images side x side) and --width (a factor on every layer's width) only shrink the models for a smoke run.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from aejax import regularizers
from aejax.data.batch import Batch
from aejax.likelihoods import get_likelihood
from aejax.models import get_model
from aejax.regularizers.contractive import choose_method

ENCODERS = {
    "784-1000-500-250-30": dict(hidden=(1000, 500, 250), code_dim=30, code_activation="linear"),
    "784-1000 sigmoid": dict(hidden=(), code_dim=1000, code_activation="sigmoid"),
}
VARIANTS = [
    ("plain AE", None),
    ("contractive jacfwd", {"method": "jacfwd"}),
    ("contractive jacrev", {"method": "jacrev"}),
    ("contractive auto", {"method": "auto"}),
    ("hutchinson k=1", {"method": "hutchinson", "num_probes": 1}),
    ("hutchinson k=4", {"method": "hutchinson", "num_probes": 4}),
    ("closed form", {"method": "closed_form"}),
]


def make_step(model, hparams, tx):
    """A jitted Adam step on recon NLL + 0.1 * contractive(**hparams) (plain if hparams is None)."""
    lik = get_likelihood("bernoulli")
    terms = [] if hparams is None else [regularizers.Term("contractive", 0.1, hparams)]
    penalty = regularizers.combine(*terms)

    @jax.jit
    def step(params, opt_state, batch, rng):
        def loss(p):
            outputs = model.apply({"params": p}, batch.x)
            reg, _ = penalty(step=0, params=p, apply_fn=model.apply, batch=batch, outputs=outputs, rng=rng)
            return jnp.mean(lik.nll(outputs.decoder_output, batch.x)) + reg

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def time_step(step, params, opt_state, batch, steps: int, budget: float) -> tuple[float, float]:
    """(compile + first step seconds, median seconds per step after warm-up)."""
    rng = jax.random.key(0)
    t = time.perf_counter()
    params, opt_state, value = step(params, opt_state, batch, rng)
    jax.block_until_ready(value)
    first = time.perf_counter() - t
    times, start = [], time.perf_counter()
    for i in range(steps):
        t = time.perf_counter()
        params, opt_state, value = step(params, opt_state, batch, jax.random.fold_in(rng, i))
        jax.block_until_ready(value)
        times.append(time.perf_counter() - t)
        if time.perf_counter() - start > budget:
            break
    assert np.isfinite(float(value))
    return first, float(np.median(times))


def encoders(side: int, width: float) -> dict:
    """ENCODERS at side x side inputs and layer widths times `width`, named by their sizes."""
    out = {}
    for name, kw in ENCODERS.items():
        if (side, width) != (28, 1.0):
            hidden = tuple(max(2, round(h * width)) for h in kw["hidden"])
            kw = dict(kw, hidden=hidden, code_dim=max(2, round(kw["code_dim"] * width)))
            sizes = "-".join(str(v) for v in (side * side, *hidden, kw["code_dim"]))
            name = sizes + name[len(name.split(" ")[0]) :]  # the sizes, then e.g. " sigmoid"
        out[name] = kw
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--budget", type=float, default=15.0, help="seconds of timed steps per row")
    ap.add_argument("--side", type=int, default=28, help="images side x side (smaller: a smoke run)")
    ap.add_argument("--width", type=float, default=1.0, help="multiplies every layer's width (smoke runs)")
    args = ap.parse_args()
    x = jax.random.uniform(jax.random.key(0), (args.batch, args.side, args.side, 1))
    batch = Batch(x=x, label=jnp.zeros((args.batch,), jnp.int32))
    tx = optax.adam(1e-3)
    print(
        f"\n{jax.device_count()} x {jax.devices()[0].platform}, batch {args.batch}, "
        "Bernoulli recon + 0.1 * contractive, Adam; median s/step after one warm-up step\n"
    )
    print("| encoder | step | auto picks | s/step | vs plain | compile+1st (s) |")
    print("|---|---|---|---|---|---|")
    for enc_name, kw in encoders(args.side, args.width).items():
        model = get_model("mlp", input_shape=(args.side, args.side, 1), activation="sigmoid", **kw)
        params = model.init(jax.random.key(1), x[:1])["params"]
        auto = choose_method(args.side * args.side, kw["code_dim"])
        plain = None
        for name, hparams in VARIANTS:
            if hparams and hparams["method"] == "closed_form" and kw["hidden"]:
                continue  # the closed form is for one sigmoid layer only
            step = make_step(model, hparams, tx)
            first, per_step = time_step(step, params, tx.init(params), batch, args.steps, args.budget)
            plain = per_step if plain is None else plain
            pick = auto if hparams and hparams["method"] == "auto" else ""
            print(
                f"| {enc_name} | {name} | {pick} | {per_step:.4f} | {per_step / plain:.1f}x | {first:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
