"""Export a trained SAE in the layout the PyTorch SAE tools read (SAELens): `cfg.json` + `sae_weights.safetensors`.

Tensors (float32): `W_enc` [d, n], `W_dec` [n, d], `b_enc` [n], `b_dec` [d]; JumpReLU and BatchTopK add
`threshold` [n]; Gated writes `W_enc` (the gate), `b_gate`, `r_mag`, `b_mag`, `W_dec`, `b_dec`.

aejax's input scale s and data centre c (the "sae_state" collection, `aejax.models.sae_base`) are folded into
the weights, so the exported SAE reads raw inputs x [B, d] and gives the same codes:

    pre   = (x - b_dec) @ W_enc + b_enc         with W_enc = s W_enc', b_dec = (b_dec' + c) / s
    x_hat = f @ W_dec + b_dec                   with W_dec = W_dec' / s

(`apply_b_dec_to_input` is false when the model has no pre-encoder bias; then pre = x @ W_enc + b_enc). cfg.json
says `normalize_activations: "none"` for that reason. Architectures: "standard" (relu_l1), "topk" (with k and
`relu_after_topk`), "jumprelu" (also BatchTopK, whose inference rule ReLU(pre) * 1[pre > theta] is a JumpReLU with
one threshold for every latent, as Bussmann et al. 2024 export it) and "gated".

  python -m aejax.sae_export --workdir=runs/sae --out=runs/sae/export
"""

import argparse
import json
import os

import jax
import numpy as np
from safetensors.numpy import save_file

from aejax.models.sae_base import STATE, AbstractSparseAutoencoder

ARCHITECTURES = {"relu_l1": "standard", "topk": "topk", "jumprelu": "jumprelu", "batchtopk": "jumprelu",
                 "gated": "gated"}  # fmt: skip
WEIGHTS, CONFIG = "sae_weights.safetensors", "cfg.json"


def export_tensors(model: AbstractSparseAutoencoder, variables) -> tuple[dict[str, np.ndarray], dict]:
    """The exported tensors and cfg.json fields of a trained SAE (variables: {"params", "sae_state"}).

    Raises:
      TypeError: if the model is not an aejax SAE.
    """
    if not isinstance(model, AbstractSparseAutoencoder):
        raise TypeError(f"Only sparse autoencoders can be exported, got {type(model).__name__}.")
    name = next(n for n in ARCHITECTURES if type(model).__module__.endswith(f".{n}"))
    p = jax.tree.map(lambda a: np.asarray(a, np.float32), variables["params"])
    st = jax.tree.map(np.asarray, variables[STATE])
    s = float(st["input_scale"])
    w_dec = p["W_dec"]  # [n, d]
    w_enc = w_dec.T if model.tied else p["W_enc"]  # [d, n]
    b = (p["b_dec"] + st["data_centre"]) / s
    tensors = {"W_enc": s * w_enc, "W_dec": w_dec / s, "b_dec": b}
    cfg = {
        "architecture": ARCHITECTURES[name],
        "d_in": int(w_enc.shape[0]),
        "d_sae": int(w_enc.shape[1]),
        "apply_b_dec_to_input": bool(model.pre_bias),
        "normalize_activations": "none",
        "dtype": "float32",
        "aejax_model": name,
        "input_shape": list(model.input_shape),
    }
    if name == "gated":
        tensors.update(b_gate=p["b_enc"], r_mag=p["r_mag"], b_mag=p["b_mag"])
    else:
        tensors["b_enc"] = p["b_enc"]
    if name == "jumprelu":
        tensors["threshold"] = np.exp(p["log_threshold"])
    if name == "batchtopk":
        theta = float(model.bind(variables).threshold())
        tensors["threshold"] = np.full(w_enc.shape[1], theta, np.float32)
    if name == "topk":
        cfg.update(k=int(model.eval_k), relu_after_topk=bool(model.relu))
    return {k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}, cfg


def export(model: AbstractSparseAutoencoder, variables, directory: str) -> tuple[str, str]:
    """Writes cfg.json and sae_weights.safetensors into `directory` (created); returns their paths."""
    tensors, cfg = export_tensors(model, variables)
    os.makedirs(directory, exist_ok=True)
    weights, config = os.path.join(directory, WEIGHTS), os.path.join(directory, CONFIG)
    save_file(tensors, weights)
    with open(config, "w") as f:
        json.dump(cfg, f, indent=2)
    return config, weights


def main() -> None:
    from aejax import runs  # the trainer's stack is needed only to load a run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a finished SAE run")
    parser.add_argument("--out", default=None, help="output directory (default: <workdir>/export)")
    args = parser.parse_args()
    run = runs.load_run(args.workdir)
    variables = jax.device_get({"params": run.state.params, **run.state.model_state})
    for path in export(run.model, variables, args.out or os.path.join(run.workdir, "export")):
        print(path)


if __name__ == "__main__":
    main()
