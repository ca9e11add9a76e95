"""The name issue 10 gives the sequence-autoencoder config: the same variants as configs/sequence_ae.py.

  python launch.py --config=configs/seq2seq.py:<variant>     # = configs/sequence_ae.py:<variant>
"""

from configs.sequence_ae import VARIANTS, get_config

__all__ = ["VARIANTS", "get_config"]
