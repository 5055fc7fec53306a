"""VideoBERT: joint video-language representation learning (Sun et al., ICCV 2019) as a pipeline."""

__version__ = "0.1.0"
