"""Speech recognition: word error rate and speed of the pocketsphinx backend on espeak-ng speech.

    python bench/asr.py [--videos 3]

Prints, for each espeak-ng voice, the WER and the fraction of words right on eight narration-style
sentences (spoken into one file with a second of silence between them), and for ``--videos``
narrated synthetic videos (``videobert synth --audio``) against their narration. Speed is given as
seconds of audio per second of wall time for the whole ``transcribe`` call, beside the baseline of
ffmpeg alone decoding the same audio to 16 kHz PCM (what any backend must pay first). Single
process, on this machine's CPU.
"""

from __future__ import annotations

import argparse
import difflib
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videobert.media import audio_pcm  # noqa: E402
from videobert.runtime import cpu_name  # noqa: E402
from videobert.synthetic import SynthConfig, espeak_exe, read_labels  # noqa: E402
from videobert.synthetic import run as synth  # noqa: E402
from videobert.text.asr import PocketsphinxRecognizer, transcribe, word_error_rate  # noqa: E402

SENTENCES = [
    "the red circle moves to the left of the screen",
    "now we add the sugar and stir it for two minutes",
    "okay so the blue square grows bigger",
    "put the chicken in the oven and wait",
    "cut the onions into small pieces",
    "then we pour the water into the pan",
    "the green triangle goes up",
    "let me show you how to make bread",
]
VOICES = [("en-us", 165), ("en-us+klatt4", 160)]  # synth's narration voice; the voice tests use


def words_right(reference: str, hypothesis: str) -> float:
    ref, hyp = reference.split(), hypothesis.split()
    return sum(b.size for b in difflib.SequenceMatcher(a=ref, b=hyp, autojunk=False).get_matching_blocks()) / len(ref)


def speak_file(voice: str, wpm: int, folder: Path) -> Path:
    pieces, rate = [], 22050
    for i, sentence in enumerate(SENTENCES):
        path = folder / f"{voice}-{i}.wav"
        subprocess.run([espeak_exe(), "-v", voice, "-s", str(wpm), "-w", str(path), "--", sentence], check=True)
        with wave.open(str(path)) as wav:
            rate = wav.getframerate()
            pieces += [np.zeros(rate, np.int16), np.frombuffer(wav.readframes(wav.getnframes()), np.int16)]
    pieces.append(np.zeros(rate, np.int16))
    out = folder / f"{voice}.wav"
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(rate)
        wav.writeframes(np.concatenate(pieces).tobytes())
    return out


def measure(path: Path, reference: str, recognizer) -> tuple[float, float, float, float, float]:
    began = time.perf_counter()
    for _ in audio_pcm(path):
        pass
    ffmpeg_seconds = time.perf_counter() - began
    began = time.perf_counter()
    cues, audio_seconds = transcribe(path, recognizer)
    asr_seconds = time.perf_counter() - began
    hypothesis = " ".join(w.text for c in cues for w in c.words)
    return (word_error_rate(reference, hypothesis), words_right(reference, hypothesis), audio_seconds,
            audio_seconds / asr_seconds, audio_seconds / ffmpeg_seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=3, help="narrated synthetic videos to transcribe (0: none)")
    args = parser.parse_args()
    if espeak_exe() is None:
        print("espeak-ng is not installed (apt-get install espeak-ng)")
        return 1
    import importlib.metadata as md

    print(f"device: {cpu_name()}, 1 process; pocketsphinx {md.version('pocketsphinx')} (bundled en-us model)")
    print(f"{'input':44s} {'audio s':>8s} {'WER':>6s} {'right':>6s} {'asr x RT':>9s} {'ffmpeg-only x RT':>17s}")
    recognizer = PocketsphinxRecognizer()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        reference = " ".join(SENTENCES)
        for voice, wpm in VOICES:
            wer, right, seconds, speed, baseline = measure(speak_file(voice, wpm, tmp), reference, recognizer)
            label = f"8 sentences, espeak-ng {voice} {wpm} wpm"
            print(f"{label:44s} {seconds:8.1f} {wer:6.2f} {right:6.2f} {speed:9.1f} {baseline:17.0f}")
        if args.videos:
            synth(tmp / "synth", SynthConfig(videos=args.videos, seed=0, audio=True, workers=1))
            labels = read_labels(tmp / "synth" / "labels.jsonl")
            for video in sorted((tmp / "synth" / "videos").glob("*.mp4")):
                reference = " ".join(r["narration"] for r in labels if r["video_id"] == video.stem and r["narration"])
                wer, right, seconds, speed, baseline = measure(video, reference, recognizer)
                label = f"synth --audio {video.stem} (en-us 165 wpm)"
                print(f"{label:44s} {seconds:8.1f} {wer:6.2f} {right:6.2f} {speed:9.1f} {baseline:17.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
