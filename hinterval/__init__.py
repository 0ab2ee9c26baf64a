"""hinterval: HyperInterval continual learning (interval embeddings -> hypernetwork -> weight boxes).

Library code only: no Ray imports here (sweeps live in ``tune/``).
"""
__version__ = "0.1.0"
