"""Stage entry points: thin ``main(argv)`` functions over the ``videobert`` library.

Each stage runs as ``videobert <stage> ...`` or ``python -m pipelines.<stage> ...`` (also under
``torchrun`` where the stage shards its work).
"""
