"""EncDec-AD (Malhotra et al. 2016) and sequence-autoencoder codes on aeon's bundled series, with the classical
detectors beside them. A CPU-scale analogue; see README.md.

  python -m experiments.malhotra_2016.run --out=runs/malhotra_2016            # everything
  python -m experiments.malhotra_2016.run --out=runs/malhotra_2016 --parts=kdd

Parts: "kdd" (anomaly detection on kdd_tsad_135: the autoencoders via launch's job, then STOMP, LOF, DWT-MLEAD,
KMeansAD and IsolationForest from aeon on the same split; kdd_scores.png), "oneclass" (GunPoint, ArrowHead,
ItalyPowerDemand: train on one class, ROC AUC on all test series, mean over classes; beside it PCA
reconstruction error, sklearn IsolationForest and aeon ROCKAD), "probe" (logistic regression on codes vs raw
series). Every autoencoder run is a workdir under --out (a finished one is read back, not retrained); the
tables are printed as markdown and written to <out>/tables.md and <out>/results.json.
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


def run_ae(variant: str, out: str, overrides: dict | None = None) -> dict:
    """Trains (or reads back) one autoencoder run of configs/seq2seq.py and returns its results.json."""
    name = variant.replace(",", "_") + "".join(f"_{k.split('.')[-1]}{v}" for k, v in (overrides or {}).items())
    workdir = os.path.join(out, name)
    config = seq2seq.get_config(variant)
    with config.unlocked():
        for key, value in (overrides or {}).items():
            section, field = key.split(".")
            config[section][field] = value
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


def one_class(out: str) -> tuple[dict, str]:
    from aeon.anomaly_detection.collection import ROCKAD
    from sklearn.decomposition import PCA
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score

    rows = {}
    for ds in ONE_CLASS_SETS:
        cfg = seq2seq.get_config(ds)
        tr, te = (datasets.load_split(cfg.dataset, s) for s in ("train", "test"))
        norm = transforms.Standardizer.fit(tr.x)
        xtr, xte = norm.apply(tr.x)[..., 0].astype(np.float64), norm.apply(te.x)[..., 0].astype(np.float64)
        aucs = {k: [] for k in ("LSTM EncDec", "PCA recon. error", "IsolationForest", "ROCKAD")}
        for c in np.unique(tr.labels):
            pos = te.labels != c  # the other classes are the anomalies
            aucs["LSTM EncDec"].append(run_ae(ds, out, {"sequence.one_class": int(c)})["one_class_roc_auc"])
            a = xtr[tr.labels == c]
            pca = PCA(n_components=min(len(a) - 1, 8)).fit(a)
            err = np.square(pca.inverse_transform(pca.transform(xte)) - xte).sum(axis=1)
            aucs["PCA recon. error"].append(roc_auc_score(pos, err))
            iso = IsolationForest(random_state=0).fit(a)
            aucs["IsolationForest"].append(roc_auc_score(pos, -iso.score_samples(xte)))
            rock = ROCKAD(random_state=0, n_neighbors=min(5, len(a) - 1)).fit(a[:, None, :])
            aucs["ROCKAD"].append(roc_auc_score(pos, rock.predict(xte[:, None, :])))
        rows[ds] = {k: float(np.mean(v)) for k, v in aucs.items()} | {"num_classes": len(aucs["ROCKAD"])}
    keys = ("LSTM EncDec", "PCA recon. error", "IsolationForest", "ROCKAD")
    lines = ["| set (classes) | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [
        f"| {d} ({r['num_classes']}) | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |" for d, r in rows.items()
    ]
    return rows, "\n".join(lines)


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
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results, tables = {}, []
    for part in args.parts.split(","):
        rows, table = {"kdd": kdd, "oneclass": one_class, "probe": probe}[part](args.out)
        results[part] = rows
        tables.append(f"## {part}\n\n{table}\n")
        print(tables[-1], flush=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(args.out, "tables.md"), "w") as f:
        f.write("\n".join(tables))


if __name__ == "__main__":
    main()
