"""Analyses of trained autoencoders.

PCA comparison, score fields (densities with known scores), Jacobian spectra, probes, retrieval.
"""
