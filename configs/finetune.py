"""Fine-tuning a finished run's encoder and a softmax layer on labels: the job "finetune" (aejax/jobs/finetune.py).

Erhan et al. (2010): the encoder of `finetune.pretrained_workdir` (any finished run of the default job, e.g. the
main job's) with a softmax layer, trained end to end on n labelled examples per class, from the trained weights
("pretrained") or from a random init of the same network ("random"), with the same budget.

  python launch.py --config=configs/finetune.py --config.finetune.pretrained_workdir=runs/mnist_ae \
      --workdir=runs/mnist_ae_finetune
  python launch.py --config=configs/finetune.py:random --config.finetune.pretrained_workdir=runs/mnist_ae \
      --config.finetune.labels_per_class=all --workdir=runs/mnist_ae_finetune_random_all

Variants (comma separated): "" (pretrained start, 40 labels per class, 1000 steps of Adam 1e-3 with warm-up and
cosine decay), "random" (random start), "runlocal" (20 steps, for smoke tests). Writes results.json (test_error,
test_xent), config.json, checkpoints/ and metrics into the workdir.
"""

import ml_collections

from aejax.jobs import finetune
from configs import variants as variants_lib

VARIANTS = ("random", "runlocal")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    variants = variants_lib.parse(arg, VARIANTS)
    c = finetune.default_config()
    if "random" in variants:
        c.finetune.init = "random"
    if "runlocal" in variants:
        c.num_train_steps = 20
        c.log_every = 5
        c.eval_every = 10
        c.optimizer.warmup_steps = 2
        c.finetune.labels_per_class = "10"
    return c.lock()
