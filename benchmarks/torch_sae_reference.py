"""PyTorch eager reference of benchmarks/bench_sae.py's TopK SAE step (run in a private venv with torch; torch is
not a dependency of aejax):

  /path/to/torch-venv/bin/python benchmarks/torch_sae_reference.py --data /tmp/x/train_x.npy --n 4096

The same computation as bench_sae.py's hand-written jax step, written as the PyTorch SAE libraries write it
(openai/sparse_autoencoder, EleutherAI sparsify): inputs scaled so E||x||^2 = d and b_dec + the geometric median
of the first batch as pre-encoder bias; pre = (x - b) W_enc + b_enc; `torch.topk` keeps k per row, ReLU, scattered
into zeros; x_hat = f W_dec + b; loss = mean_B ||x - x_hat||^2 + alpha * mean_B AuxK (the k_aux largest ReLU
pre-activations of dead latents reconstruct the residual; computed only on steps with a dead latent);
dead latents tracked by examples since last fired; the W_dec gradient's component along each row removed before
Adam(1e-3) and the rows renormalised after it. Batches drawn from the data by random rows. Prints
`examples_per_s <float>` (after --warmup untimed steps).
"""

import argparse
import time

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="an [N, d] float32 .npy file")
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--aux_k", type=int, default=256)
    ap.add_argument("--auxk_coeff", type=float, default=1 / 32)
    ap.add_argument("--dead_after", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x_all = torch.from_numpy(np.load(args.data))
    d, n = x_all.shape[1], args.n
    rows = torch.from_numpy(
        np.random.default_rng(1).integers(0, len(x_all), size=(args.warmup + args.steps, args.batch))
    )

    with torch.no_grad():
        x0 = x_all[rows[0]]
        s = torch.sqrt(d / (x0 * x0).sum(1).mean())
        xs = s * x0
        c = xs.mean(0)
        for _ in range(50):  # Weiszfeld
            w = 1.0 / torch.clamp(torch.linalg.norm(xs - c, dim=1), min=1e-8)
            c = (w[:, None] * xs).sum(0) / w.sum()
        w_dec0 = torch.randn(n, d)
        w_dec0 /= torch.linalg.norm(w_dec0, dim=1, keepdim=True)
    W_dec = torch.nn.Parameter(w_dec0.clone())
    W_enc = torch.nn.Parameter(w_dec0.T.clone())
    b_enc = torch.nn.Parameter(torch.zeros(n))
    b_dec = torch.nn.Parameter(torch.zeros(d))
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=1e-3)
    since = torch.zeros(n, dtype=torch.int64)

    def step(i):
        nonlocal since
        x_n = s * x_all[rows[i]]
        b = b_dec + c
        pre = (x_n - b) @ W_enc + b_enc
        vals, idx = torch.topk(pre, args.k, dim=1)
        code = torch.zeros_like(pre).scatter(1, idx, torch.relu(vals))
        recon = code @ W_dec + b
        residual = x_n - recon
        loss = (residual * residual).sum(1).mean()
        with torch.no_grad():
            fired = (code != 0).any(0)
            since = torch.where(fired, 0, torch.clamp(since + x_n.shape[0], max=2**30))
            dead = since >= args.dead_after
        if dead.any():  # AuxK only when some latent is dead, as aejax (a lax.cond) and EleutherAI's sparsify do
            masked = torch.where(dead[None, :], torch.relu(pre), 0.0)
            avals, aidx = torch.topk(masked, args.aux_k, dim=1)
            e_hat = torch.zeros_like(pre).scatter(1, aidx, avals) @ W_dec
            aux = ((residual.detach() - e_hat) ** 2).sum(1)
            loss = loss + args.auxk_coeff * aux.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            u = W_dec / torch.linalg.norm(W_dec, dim=1, keepdim=True)
            W_dec.grad -= (W_dec.grad * u).sum(1, keepdim=True) * u
        opt.step()
        with torch.no_grad():
            W_dec.div_(torch.linalg.norm(W_dec, dim=1, keepdim=True))
        return loss

    for i in range(args.warmup):
        step(i)
    t = time.perf_counter()
    for i in range(args.warmup, args.warmup + args.steps):
        loss = step(i)
    loss.item()
    print(f"examples_per_s {args.steps * args.batch / (time.perf_counter() - t):.1f}")


if __name__ == "__main__":
    main()
