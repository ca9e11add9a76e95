"""The default job "train" (`aejax.train`): build, loop, analyse; what a config without `trainer` runs."""

from aejax import train
from aejax.jobs import DEFAULT, JOBS, Job

JOB = JOBS.register(DEFAULT)(Job(train.train_and_evaluate, train.reanalyse))
