"""EncDec-AD (Malhotra et al. 2016) and sequence-autoencoder codes on aeon's bundled series, with the classical
detectors beside them. A CPU-scale analogue; see README.md.

  python -m experiments.malhotra_2016.run --out=runs/malhotra_2016            # everything
  python -m experiments.malhotra_2016.run --out=runs/malhotra_2016 --parts=kdd
  python -m experiments.malhotra_2016.run --out=runs/malhotra_2016 --parts=oneclass   # section 2 alone
  python -m experiments.malhotra_2016.run --out=/tmp/m16_local --runlocal   # smoke test: one-class, 10-step models

Parts: "kdd" (anomaly detection on kdd_tsad_135: the autoencoders via launch's job, then STOMP, LOF, DWT-MLEAD,
KMeansAD and IsolationForest from aeon on the same split; kdd_scores.png), "oneclass" (GunPoint, ArrowHead,
ItalyPowerDemand: train on one class, ROC AUC on all test series, mean over classes, an ablation of the
autoencoder's choices with seeds 0, 1, 2; beside it PCA reconstruction error, sklearn IsolationForest and aeon
ROCKAD; `--sets` and `--seeds` restrict it, e.g. to fill the run directory from parallel processes), "probe"
(logistic regression on codes vs raw series). Every autoencoder run is a workdir under --out (a finished one is
read back, not retrained); the tables are printed as markdown and written to <out>/tables.md and
<out>/results.json.
"""

import argparse
import json
import os
import time

import numpy as np

from aejax import runs
from aejax.analysis import sequence_anomaly, sequence_plots
from aejax.data import datasets, series, transforms
from aejax.jobs import sequence as job
from configs import seq2seq

WINDOW = 64
ONE_CLASS_SETS = ("gunpoint", "arrowhead", "italypowerdemand")
PROBE_SETS = ("gunpoint", "arrowhead", "italypowerdemand", "basicmotions", "japanesevowels")
KDD_MODELS = {"LSTM EncDec": "kdd", "GRU EncDec": "kdd,gru", "Conv1d AE": "kdd,conv1d"}


def run_ae(variant: str, out: str, overrides: dict | None = None, name: str | None = None) -> dict:
    """Trains (or reads back) one autoencoder run of configs/seq2seq.py and returns its results.json.

    `overrides` maps "field" or "section.field" to a value; the workdir is <out>/<name> (default: the variant
    and the overrides)."""
    if name is None:
        name = variant.replace(",", "_") + "".join(f"_{k.split('.')[-1]}{v}" for k, v in (overrides or {}).items())
    workdir = os.path.join(out, name)
    config = seq2seq.get_config(variant)
    with config.unlocked():
        for key, value in (overrides or {}).items():
            *sections, field = key.split(".")
            node = config
            for section in sections:
                node = node[section]
            node[field] = value
    return runs.train_or_load(config, workdir) | {"workdir": workdir}


def kdd(out: str) -> tuple[dict, str]:
    from aeon.anomaly_detection.series.distance_based import LOF, STOMP, KMeansAD
    from aeon.anomaly_detection.series.distribution_based import DWT_MLEAD
    from aeon.anomaly_detection.series.outlier_detection import IsolationForest

    rows, scores = {}, {}
    for name, variant in KDD_MODELS.items():
        r = run_ae(variant, out, {"sequence.vus": True})
        npz = np.load(os.path.join(r["workdir"], "scores.npz"))
        for key, label in (("recon_error", "recon. error"), ("encdec_ad", "EncDec-AD (Mahalanobis)")):
            rows[f"{name}, {label}"] = {k.split("/")[1]: v for k, v in r.items() if k.startswith(key + "/")}
            rows[f"{name}, {label}"]["time_s"] = r["train_time_s"]
            if name == "LSTM EncDec":
                scores[f"{name}\n{label}"] = npz[key]
    # The same split: z-normalised with the prefix's statistics, the scored points after the prefix.
    cfg = seq2seq.get_config("kdd")
    d = job.load_sequence_data(cfg)
    prefix = (
        transforms.Standardizer.fit((p := series.load_anomaly_series("kdd_tsad_135", "train").values)[None])
        .apply(p)[:, 0]
        .astype(np.float64)
    )
    rest, labels = d.values[:, 0].astype(np.float64), d.anomaly
    detectors = {  # (detector, semi-supervised: fit on the normal prefix)
        "STOMP": (STOMP(window_size=WINDOW), False),
        "LOF": (LOF(window_size=WINDOW, n_neighbors=20), True),
        "DWT-MLEAD": (DWT_MLEAD(start_level=3), False),
        "KMeansAD": (KMeansAD(window_size=WINDOW, n_clusters=20, random_state=0), True),
        "IsolationForest": (IsolationForest(window_size=WINDOW, random_state=0), True),
    }
    for name, (det, semi) in detectors.items():
        t0 = time.perf_counter()
        s = det.fit(prefix).predict(rest) if semi else det.fit_predict(rest)
        rows[name] = sequence_anomaly.detection_metrics(labels, s, vus=True)
        rows[name]["time_s"] = round(time.perf_counter() - t0, 2)
        scores[name] = s
    sequence_plots.detector_scores(
        d.values[:, 0],
        labels,
        scores,
        os.path.join(out, "kdd_scores.png"),
        offset=d.offset,
        title="kdd_tsad_135 (InternalBleeding16): labelled anomaly shaded",
    )
    keys = ("roc_auc", "pr_auc", "range_roc_auc", "range_pr_auc", "range_roc_vus", "range_pr_vus", "time_s")
    lines = ["| detector | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [
        f"| {n} | " + " | ".join(f"{r[k]:.3f}" if k != "time_s" else f"{r[k]:.1f}" for k in keys) + " |"
        for n, r in rows.items()
    ]
    return rows, "\n".join(lines)


SEEDS = (0, 1, 2)
DENOISING = {"corruption.name": "gaussian", "corruption.sigma": 0.5}  # in z-normalised units
# Early stopping on a quarter of the class's training series (held-out normal series), checked every 25 steps.
EARLY_STOPPING = {
    "sequence.validation_fraction": 0.25,
    "sequence.early_stopping": True,
    "num_train_steps": 500,
    "eval_every": 25,
    "checkpoint_every": 500,
}
# The one-class ablation's training runs: name -> (configs/seq2seq.py variant suffix, overrides, sets or None for
# all). From "conv" on each adds one change to the one above it, so a row's difference to the previous one is
# that change's effect. The LSTM runs on ItalyPowerDemand only (24 steps): on GunPoint / ArrowHead (150 / 251
# steps) its sequential scan costs 5-10x the conv AE's training, beyond the run's budget.
ONE_CLASS_TRAIN = {
    "lstm": ("", {"num_train_steps": 300}, ("italypowerdemand",)),
    "conv": (",conv1d", {"num_train_steps": 300}, None),
    "conv_k8": (",conv1d", {"num_train_steps": 300, "model.code_dim": 8}, None),
    "conv_k8_dae": (",conv1d", {"num_train_steps": 300, "model.code_dim": 8, **DENOISING}, None),
    "conv_k8_dae_wd": (
        ",conv1d",
        {"num_train_steps": 300, "model.code_dim": 8, **DENOISING, "optimizer.weight_decay": 1e-3},
        None,
    ),
    "conv_k8_dae_wd_es": (
        ",conv1d",
        {"model.code_dim": 8, **DENOISING, "optimizer.weight_decay": 1e-3, **EARLY_STOPPING},
        None,
    ),
}
# (row label, training run, score of `aejax.jobs.sequence.one_class_scores`)
ONE_CLASS_ROWS = (
    ("LSTM EncDec, K=16, 300 steps: free-running error", "lstm", "recon_error"),
    ("same model: teacher-forced (one-step-ahead) error", "lstm", "recon_error_teacher"),
    ("Conv1d AE, K=16, 300 steps", "conv", "recon_error"),
    ("+ smaller code K=8", "conv_k8", "recon_error"),
    ("+ denoising (Gaussian noise, sigma 0.5)", "conv_k8_dae", "recon_error"),
    ("same model: code distance to the mean", "conv_k8_dae", "code_mean"),
    ("same model: code Mahalanobis", "conv_k8_dae", "code_mahalanobis"),
    ("same model: code 1-NN distance", "conv_k8_dae", "code_knn"),
    ("+ weight decay 1e-3 (300 steps)", "conv_k8_dae_wd", "recon_error"),
    ("+ early stopping on held-out normal series (<= 500 steps)", "conv_k8_dae_wd_es", "recon_error"),
    ("same model: EncDec-AD (Mahalanobis error)", "conv_k8_dae_wd_es", "encdec_ad"),
    ("same model: code Mahalanobis", "conv_k8_dae_wd_es", "code_mahalanobis"),
)
BASELINES = (
    "PCA recon. error (8 comp.)",
    "IsolationForest",
    "ROCKAD",
    "Gaussian of the series (Ledoit-Wolf Mahalanobis)",
    "EncDec-AD control: Gaussian of abs(x) on the validation series",
)
# --runlocal: the 10-step tiny models of the "runlocal" variant (no step overrides), one set, class, seed.
RUNLOCAL_DROP = ("num_train_steps", "eval_every", "checkpoint_every", "model.code_dim")


def _spread(values) -> str:
    if not values:
        return "-"
    return f"{np.mean(values):.3f} ({np.min(values):.3f}-{np.max(values):.3f})"


def one_class_baselines(ds: str, classes) -> dict[str, list[float]]:
    """ROC AUC per class of PCA reconstruction error (8 components), IsolationForest, ROCKAD and a Ledoit-Wolf
    Gaussian, fitted on all of the class's training series (z-normalised with the training statistics, as the
    autoencoders see them), and the control of EncDec-AD without a model (reconstruction 0, so the error vector
    is |x|): the Gaussian of |x| on the early-stopping runs' validation series."""
    from aeon.anomaly_detection.collection import ROCKAD
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score

    cfg = seq2seq.get_config(ds)
    tr, te = (datasets.load_split(cfg.dataset, s) for s in ("train", "test"))
    norm = transforms.Standardizer.fit(tr.x)
    xtr, xte = norm.apply(tr.x)[..., 0].astype(np.float64), norm.apply(te.x)[..., 0].astype(np.float64)
    aucs = {k: [] for k in BASELINES}
    for c in classes:
        pos = te.labels != c  # the other classes are the anomalies
        a = xtr[tr.labels == c]
        pca = PCA(n_components=min(len(a) - 1, 8)).fit(a)
        err = np.square(pca.inverse_transform(pca.transform(xte)) - xte).sum(axis=1)
        aucs[BASELINES[0]].append(roc_auc_score(pos, err))
        iso = IsolationForest(random_state=0).fit(a)
        aucs[BASELINES[1]].append(roc_auc_score(pos, -iso.score_samples(xte)))
        rock = ROCKAD(random_state=0, n_neighbors=min(5, len(a) - 1)).fit(a[:, None, :])
        aucs[BASELINES[2]].append(roc_auc_score(pos, rock.predict(xte[:, None, :])))
        aucs[BASELINES[3]].append(roc_auc_score(pos, LedoitWolf().fit(a).mahalanobis(xte)))
        fraction = EARLY_STOPPING["sequence.validation_fraction"]
        _, val = job.validation_split(datasets.Split(a[..., None], np.zeros(len(a), np.int32)), fraction)
        gaussian = LedoitWolf().fit(np.abs(val.x[..., 0]))
        aucs[BASELINES[4]].append(roc_auc_score(pos, gaussian.mahalanobis(np.abs(xte))))
    return aucs


def one_class(
    out: str, runlocal: bool = False, sets: tuple[str, ...] = ONE_CLASS_SETS, seeds: tuple[int, ...] = SEEDS
) -> tuple[dict, str]:
    """Section 2: the ablation rows (mean over classes of the ROC AUC; mean and min-max over SEEDS) and the
    baselines of the same run, per set; also the training time of each training run (seconds, summed)."""
    sets, seeds = (("italypowerdemand",), SEEDS[:1]) if runlocal else (sets, seeds)
    rows, times = {}, {}
    for ds in sets:
        labels = np.unique(datasets.load_split(seq2seq.get_config(ds).dataset, "train").labels)
        classes = labels[:1] if runlocal else labels
        per_run = {}  # (training run, seed) -> {score: [AUC per class]}
        for name, (suffix, overrides, only) in ONE_CLASS_TRAIN.items():
            if only is not None and ds not in only:
                continue
            if runlocal:
                suffix += ",runlocal"
                overrides = {k: v for k, v in overrides.items() if k not in RUNLOCAL_DROP}
            for seed in seeds:
                for c in classes:
                    o = {**overrides, "seed": seed, "sequence.one_class": int(c), "sequence.figures": False}
                    r = run_ae(ds + suffix, os.path.join(out, "oneclass"), o, name=f"{ds}_{name}_c{c}_s{seed}")
                    aucs = per_run.setdefault((name, seed), {})
                    for key, value in r.items():
                        if key.startswith("one_class_roc_auc/"):
                            aucs.setdefault(key.split("/", 1)[1], []).append(value)
                    times.setdefault((ds, name), []).append(r["train_time_s"])
        rows[ds] = {
            f"{i}. {label}": [float(np.mean(per_run[(name, s)][score])) for s in seeds if (name, s) in per_run]
            for i, (label, name, score) in enumerate(ONE_CLASS_ROWS, 1)
        }
        rows[ds] |= {k: [float(np.mean(v))] for k, v in one_class_baselines(ds, classes).items()}
    keys = list(next(iter(rows.values())))
    lines = ["| row | " + " | ".join(sets) + " |", "|---" * (len(sets) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join(_spread(rows[d][k]) for d in sets) + " |" for k in keys]
    if runlocal:
        lines += [
            "",
            "(--runlocal: the 10-step tiny models of the runlocal variant; the labels describe the full run.)",
        ]
    mean_times = {f"{d}/{n}": round(float(np.mean(t)), 2) for (d, n), t in times.items()}
    lines += [
        "",
        "Training time per run (s, mean over classes and seeds): "
        + ", ".join(f"{k} {v:.1f}" for k, v in mean_times.items()),
    ]
    return {"rows": rows, "train_time_s": mean_times}, "\n".join(lines)


def probe(out: str) -> tuple[dict, str]:
    rows = {}
    for ds in PROBE_SETS:
        r = run_ae(ds, out)
        rows[ds] = {"code": r["probe_accuracy/code"], "raw": r["probe_accuracy/raw"], "mse": r["test_mse"]}
    lines = ["| set | probe on codes (K=16) | probe on raw series | test MSE per value |", "|---|---|---|---|"]
    lines += [f"| {d} | {r['code']:.3f} | {r['raw']:.3f} | {r['mse']:.3f} |" for d, r in rows.items()]
    return rows, "\n".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="runs/malhotra_2016")
    p.add_argument("--parts", default="kdd,oneclass,probe")
    p.add_argument("--runlocal", action="store_true", help="one-class smoke test: tiny 10-step models, seconds")
    p.add_argument("--sets", default=",".join(ONE_CLASS_SETS), help="the one-class part's UCR sets")
    p.add_argument("--seeds", default="0,1,2", help="the one-class part's seeds")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results, tables = {}, []
    parts = ["oneclass"] if args.runlocal else args.parts.split(",")
    for part in parts:
        if part == "oneclass":
            sets, seeds = tuple(args.sets.split(",")), tuple(int(s) for s in args.seeds.split(","))
            rows, table = one_class(args.out, runlocal=args.runlocal, sets=sets, seeds=seeds)
        else:
            rows, table = {"kdd": kdd, "probe": probe}[part](args.out)
        results[part] = rows
        tables.append(f"## {part}\n\n{table}\n")
        print(tables[-1], flush=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(args.out, "tables.md"), "w") as f:
        f.write("\n".join(tables))


if __name__ == "__main__":
    main()
