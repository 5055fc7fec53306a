"""The paper's and the field's benchmarks: YouCook II and MSR-VTT (JSFusion 1k-A) read as they are
distributed, prepared for the pipeline and for ``videobert evaluate --segments``, and the published
figures printed beside ours.

``datasets`` (the annotation readers), ``pos`` (verbs and objects for zero-shot labels),
``published`` (the table of published figures, ``published.yaml``), ``stage`` (``videobert prepare``).
"""
