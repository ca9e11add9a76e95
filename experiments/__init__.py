"""Paper reproductions, one package each: run from the repo root as `python -m experiments.<name>.run`."""
