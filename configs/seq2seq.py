"""Sequence autoencoders on the time series aeon ships: the job aejax.jobs.sequence.

EncDec-AD (Malhotra et al. 2016) on the UCR anomaly series InternalBleeding16 (`kdd_tsad_135`): an LSTM
encoder-decoder (Srivastava et al. 2015) trained on windows of the normal prefix, every later point scored by
reconstruction error and by the Mahalanobis distance of its windows' error vectors. On the UCR classification
sets: the same model on whole series, its codes probed by logistic regression, or one-class detection.

  python launch.py --config=configs/seq2seq.py                        # kdd_tsad_135, LSTM (about 1-2 CPU min)
  python launch.py --config=configs/seq2seq.py:kdd,conv1d             # the 1-D conv AE on the same windows
  python launch.py --config=configs/seq2seq.py:gunpoint               # codes of GunPoint, linear probe
  python launch.py --config=configs/seq2seq.py:gunpoint --config.sequence.one_class=0   # one-class AUC
  python launch.py --config=configs/seq2seq.py:gunpoint,conv1d --config.sequence.one_class=0 \
      --config.model.code_dim=8 --config.corruption.name=gaussian --config.corruption.sigma=0.5 \
      --config.optimizer.weight_decay=1e-3 --config.sequence.validation_fraction=0.25 \
      --config.sequence.early_stopping=True --config.num_train_steps=500 --config.eval_every=25
      # experiments/malhotra_2016 section 2's best one-class recipe (score: one_class_roc_auc/encdec_ad)
  python launch.py --config=configs/seq2seq.py:japanesevowels,gru     # variable length, masked
  python launch.py --config=configs/seq2seq.py:runlocal --workdir=/tmp/seq   # seconds, for smoke tests

Variants (comma separated): one dataset of "kdd" (default), "gunpoint", "arrowhead", "italypowerdemand",
"osuleaf", "basicmotions", "japanesevowels"; "gru" (GRU cells), "conv1d" (the conv AE, fixed-length windows
only), "no_teacher" (the decoder runs free in training too), "runlocal".
"""

import ml_collections

from configs import variants as variants_lib

UCR_SETS = {
    "gunpoint": "GunPoint",
    "arrowhead": "ArrowHead",
    "italypowerdemand": "ItalyPowerDemand",
    "osuleaf": "OSULeaf",
    "basicmotions": "BasicMotions",
    "japanesevowels": "JapaneseVowels",
}
DATASETS = ("kdd", *UCR_SETS)
VARIANTS = (*DATASETS, "gru", "conv1d", "no_teacher", "runlocal")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    variants = variants_lib.parse(arg, VARIANTS)
    dataset = variants_lib.one_of(variants, DATASETS, default="kdd")

    c = ml_collections.ConfigDict()
    c.trainer = "sequence"
    c.seed = 0
    c.dataset = "kdd_tsad_135" if dataset == "kdd" else f"ucr/{UCR_SETS[dataset]}"
    c.data_dir = ml_collections.FieldReference(None, field_type=str)
    c.manual_dir = ml_collections.FieldReference(None, field_type=str)
    c.sequence = ml_collections.ConfigDict(
        dict(
            task="anomaly" if dataset == "kdd" else "classes",
            # Windows of the long series (anomaly task): length, stride of training / held-out windows, stride of
            # the scored windows; the last heldout_fraction of the normal prefix fits the error Gaussian.
            window=64,
            stride=4,
            score_stride=4,
            heldout_fraction=0.25,
            one_class=-1,  # >= 0: train on that class only, score the test series (classes task)
            validation_fraction=0.0,  # one-class: this fraction of the class's series held out as normal
            early_stopping=False,  # keep the parameters of the lowest held-out NLL (evaluated every eval_every)
            vus=False,  # also aeon's VUS metrics (seconds each)
            figures=True,  # False: no loss_curves.png, nor reconstructions.png of the classes task (small sweeps)
        )
    )
    c.model_name = "conv1d" if "conv1d" in variants else "seq2seq"
    if c.model_name == "seq2seq":
        c.model = ml_collections.ConfigDict(
            dict(
                cell="gru" if "gru" in variants else "lstm",
                hidden=64,
                code_dim=16,
                teacher_forcing="no_teacher" not in variants,
            )
        )
    else:
        c.model = ml_collections.ConfigDict(dict(features=(16, 32), kernel_size=5, code_dim=16))
    # z-normalisation per channel with the statistics of the training series (anomaly: of the normal prefix).
    c.transforms = ml_collections.ConfigDict(dict(scale="none", standardize="per_feature"))
    # Denoising (objective "sequence"): name "none", "gaussian" (sigma, in z-normalised units) or "masking" (nu).
    c.corruption = ml_collections.ConfigDict(dict(name="none", sigma=0.1, nu=0.25))
    c.likelihood = "gaussian"  # sigma = 1 on z-normalised values: half the squared error plus a constant
    c.objective = "sequence"

    c.batch_size = 32
    c.num_epochs = 0
    c.num_train_steps = 1500
    c.optimizer = ml_collections.ConfigDict(
        dict(
            name="adam",
            learning_rate=3e-3,
            schedule="warmup_cosine",
            warmup_steps=50,
            weight_decay=0.0,
            grad_clip_norm=1.0,
        )
    )
    c.log_every = 50
    c.eval_every = 500
    c.eval_batch_size = 256
    c.checkpoint_every = 500
    c.keep_checkpoints = 1
    c.steps_per_call = 0
    c.analysis = ml_collections.ConfigDict(dict(embedding="pca"))

    if "runlocal" in variants:
        c.sequence.window = 32
        c.sequence.stride = 16
        c.sequence.score_stride = 16
        c.model.code_dim = 4
        if c.model_name == "seq2seq":
            c.model.hidden = 8
        else:
            c.model.features = (4, 8)
        c.num_train_steps = 10
        c.eval_batch_size = 64
        c.log_every = 5
        c.eval_every = 10
        c.checkpoint_every = 10
    return c.lock()
