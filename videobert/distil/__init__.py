"""Distilling a trained VideoBERT's cross-encoder into a dual encoder (the distil stage), the first
stage of search: ``train`` (batches, the loss, the optimiser loop), ``stage`` (``MODEL/dual``:
``run``; the val figures and the first-stage K chosen there; the model folder's ``test_index``).
"""

from videobert.distil.stage import DistilConfig, run

__all__ = ["DistilConfig", "run"]
