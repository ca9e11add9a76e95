"""Jobs other than the main trainer: each module defines `train_and_evaluate(config, workdir) -> dict` and is
launched by a config that sets `trainer = "jobs.<module>"` (see launch.py), e.g. `aejax.jobs.stacked`.
"""
