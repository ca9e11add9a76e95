"""PyTorch eager reference steps for benchmarks/bench_families.py (run in a private venv with torch; torch is not a
dependency of aejax):

  /path/to/torch-venv/bin/python benchmarks/torch_reference.py --model conv_pool --steps 50

Models mirror aejax's configs: "mlp" is the main job's 784-1000-500-250-30 AE (ReLU, linear code), "conv_pool" the
conv AE of configs/conv_ae.py (3x3 convs of 32 and 64 channels, 2x2 max pooling, dense code 30, nearest
upsampling), "conv_stride" its `:stride` variant (strided convs, mirrored transposed convs). Bernoulli decoder
(BCE with logits summed over pixels, mean over the batch), Adam(1e-3), batch 128 of uniform [0, 1) pixels drawn
from a fixed 4,000-row split. Prints one line: `examples_per_s <float>` (after --warmup untimed steps; the
interpreter's start and warm-up are not timed).
"""

import argparse
import time

import numpy as np
import torch
from torch import nn


def mlp():
    dims = [784, 1000, 500, 250, 30]
    enc = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        enc += [nn.Linear(a, b), nn.ReLU()]
    enc = enc[:-1]  # linear code
    dec = []
    rev = dims[::-1]
    for a, b in zip(rev[:-1], rev[1:], strict=True):
        dec += [nn.Linear(a, b), nn.ReLU()]
    dec = dec[:-1]
    return nn.Sequential(nn.Flatten(), *enc, *dec, nn.Unflatten(1, (1, 28, 28)))


def conv(mode: str):
    s = 2 if mode == "stride" else 1
    layers = [nn.Conv2d(1, 32, 3, stride=s, padding=1), nn.ReLU()]
    layers += [nn.MaxPool2d(2)] if mode == "pool" else []
    layers += [nn.Conv2d(32, 64, 3, stride=s, padding=1), nn.ReLU()]
    layers += [nn.MaxPool2d(2)] if mode == "pool" else []
    layers += [
        nn.Flatten(),
        nn.Linear(7 * 7 * 64, 30),
        nn.Linear(30, 7 * 7 * 64),
        nn.ReLU(),
        nn.Unflatten(1, (64, 7, 7)),
    ]
    if mode == "pool":
        layers += [nn.Upsample(scale_factor=2), nn.Conv2d(64, 32, 3, padding=1), nn.ReLU()]
        layers += [nn.Upsample(scale_factor=2), nn.Conv2d(32, 1, 3, padding=1)]
    else:
        layers += [nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1), nn.ReLU()]
        layers += [nn.ConvTranspose2d(32, 1, 3, stride=2, padding=1, output_padding=1)]
    return nn.Sequential(*layers)


MODELS = {"mlp": mlp, "conv_pool": lambda: conv("pool"), "conv_stride": lambda: conv("stride")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=sorted(MODELS), required=True)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x_all = torch.from_numpy(np.random.default_rng(0).uniform(size=(4000, 1, 28, 28)).astype(np.float32))
    model = MODELS[args.model]()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    rows = np.random.default_rng(1).integers(0, 4000, size=(args.warmup + args.steps, args.batch))

    def step(i):
        xb = x_all[rows[i]]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), xb) / args.batch
        loss.backward()
        opt.step()
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
