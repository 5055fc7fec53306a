"""VideoBERT: joint video-language representation learning (Sun et al., ICCV 2019) as a pipeline.

``videobert.VideoBERTPipeline.from_pretrained(MODEL)`` loads a trained model folder for use
(:mod:`videobert.api`); each stage is a package (``videobert.features``, ``videobert.vocab``,
``videobert.text``, ``videobert.corpus``, ``videobert.pretrain``, ``videobert.retrieval``, …).
"""

from videobert import threads as _threads

__version__ = "0.1.0"

# Before anything imports torch: its threads from the CPUs this process may use, and OpenMP
# threads that sleep rather than spin while they wait (videobert/threads.py).
_threads.configure()


def __getattr__(name: str):
    # PEP 562: `import videobert` (the command line reads __version__) stays light; the pipeline,
    # which imports torch and every stage it uses, loads when it is first asked for.
    if name == "VideoBERTPipeline":
        from videobert.api import VideoBERTPipeline

        return VideoBERTPipeline
    raise AttributeError(f"module 'videobert' has no attribute {name!r}")
