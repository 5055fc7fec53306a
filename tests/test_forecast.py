"""Forecasting visual words: on a corpus whose next word is determined by the two before it, a
tiny model trained by the pretraining data path and losses beats the bigram baseline and
reproduces the cycle; the baselines match counts made by hand; the command end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, run_cli
from tests.eval_data import fit

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest, and repeatably, on one thread

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
# Two cycles whose shared-looking word (0, or 6) has two successors: after "2 0" comes 3, after
# "5 0" comes 1. A bigram is right 6 times in 7 at best; two words of context determine the next.
CYCLES = ([0, 1, 2, 0, 3, 4, 5], [6, 7, 8, 6, 9, 10, 11])
VISUAL_WORDS = 16  # 12 … 15 never occur
CLIPS = 48
SPLITS = {"train": 32, "val": 2, "test": 6}
TILE = 48


def cycle_words(index: int, rng: np.random.Generator, clips: int = CLIPS) -> np.ndarray:
    cycle = CYCLES[index % 2]
    phase = int(rng.integers(len(cycle)))
    return np.array([cycle[(phase + t) % len(cycle)] for t in range(clips)], np.int32)


def exemplar_colour(word: int) -> tuple[int, int, int]:
    return (40 + 15 * word, 255 - 18 * word, (97 * word) % 256)


def make_cycle_corpus(out: Path) -> Path:
    """TOKENS/ (tokens.json and one .npy a video), a manifest of videos without speech (so the
    corpus stage cuts them into video-only examples of 16 words, the last of a video shorter) and
    the corpus. The train videos have 30 … 59 clips, so that their last examples are of every
    length: a forecast's short contexts (the first clips of a video) are like sequences the model
    was trained on. The test videos have CLIPS clips."""
    from videobert import corpus as corpus_stage
    from videobert.manifest import VideoEntry, write_manifest
    from videobert.store import atomic_save_npy

    tokens = out / "tokens"
    tokens.mkdir(parents=True)
    rng = np.random.default_rng(0)
    entries, index = [], 0
    for split, count in SPLITS.items():
        for _ in range(count):
            video_id = f"cyc_{index:03d}"
            clips = CLIPS if split == "test" else int(rng.integers(30, 60))
            atomic_save_npy(tokens / f"{video_id}.npy", cycle_words(index, rng, clips))
            entries.append(VideoEntry(video_id, out / f"{video_id}.mp4", None, split))
            index += 1
    (tokens / "tokens.json").write_text(json.dumps({"vocab": None, "vocab_size": VISUAL_WORDS, "fps": 20,
                                                    "clip_frames": 30, "clip_seconds": 1.5}))
    write_manifest(out / "manifest.jsonl", entries)
    corpus_stage.run(out / "manifest.jsonl", tokens, out / "corpus", corpus_stage.CorpusConfig())
    return out / "corpus"


def train_video_mlm(corpus: Path, run_dir: Path, steps: int = 400, lr: float = 3e-3, seed: int = 0) -> Path:
    """A tiny VideoBERT trained on the corpus's video-only masked visual words (the pretraining
    data path and loss), saved as a run folder with a visual vocabulary of exemplar thumbnails.
    max_len 20 holds a 16-word example, so that every position a forecast is given (cut to
    max_len) was trained; 30 % of the words are masked, so that the last one often is."""
    import torch

    from videobert import config as cfgmod
    from videobert.corpus import load_corpus
    from videobert.model import ModelConfig, VideoBERT
    from videobert.corpus.joint_vocab import JointVocabulary
    from videobert.inputs import TokenLayout
    from videobert.pretrain import PretrainConfig, PretrainExamples, StepBatches

    vocab = JointVocabulary.load(corpus)
    layout = TokenLayout.from_vocabulary(vocab)
    cfg = PretrainConfig(preset="tiny", text_mlm=0.0, video_mlm=1.0, video_text_mlm=0.0, align=0.0, dropout=0.0,
                         concat_prob=0.0, subsample_max=1, max_len=20, mask_prob=0.3, seed=seed, steps=steps, warmup=20, lr=lr,
                         batch_size=32, device="cpu")
    torch.manual_seed(seed)
    model = VideoBERT(ModelConfig.preset("tiny", layout.text_vocab_size, layout.visual_vocab_size, dropout=0.0,
                                         attention_dropout=0.0, initializer_range=0.1, max_positions=cfg.max_len))
    batches = StepBatches(PretrainExamples(load_corpus(corpus, "train"), layout, cfg, kinds=cfg.kinds()),
                          cfg.batch_size, 1, seed)
    fit(model, batches, cfg, steps, lr)
    model.save_pretrained(run_dir)
    exemplars = run_dir / "visual_vocab" / "exemplars"  # as videobert.model_folder copies a VOCAB's
    exemplars.mkdir(parents=True)
    for word in range(12):
        Image.new("RGB", (32, 32), exemplar_colour(word)).save(exemplars / f"{word}.jpg", quality=95)
    vocab.visual_vocab = "visual_vocab"
    vocab.save(run_dir)
    cfgmod.save(cfg, run_dir / "config.yaml")
    return run_dir


@pytest.fixture(scope="module")
def cycle_run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("forecast")
    corpus = make_cycle_corpus(root)
    run = train_video_mlm(corpus, root / "run")
    from videobert.corpus import CorpusSplit
    from videobert.vocab import load_tokens

    test_ids = CorpusSplit(corpus, "test").video_names()
    return {"run": run, "corpus": corpus, "tokens": load_tokens(root / "tokens"), "test": test_ids, "root": root}


def forecast_cli(*args) -> subprocess.CompletedProcess:
    """``videobert forecast ARGS`` through the console command (until pipelines/cli.py registers
    the command: through its module, the same ``main``)."""
    from pipelines.cli import STAGES

    if "forecast" in STAGES:
        return run_cli("forecast", *args, env=ONE_THREAD)
    env = {**os.environ, "PYTHONPATH": str(REPO), "VIDEOBERT_PROGRESS": "0", **ONE_THREAD}
    return subprocess.run([sys.executable, "-m", "pipelines.forecast", *map(str, args)], check=False, cwd=REPO,
                          capture_output=True, text=True, timeout=600, env=env)


# ------------------------------------------------------------------------ baselines by hand
def test_baselines_match_counts_made_by_hand():
    from videobert.forecast import baseline_hits, fit_baselines

    train = [np.array([0, 1, 0, 2]), np.array([0, 1, 3]), np.array([2])]
    baselines = fit_baselines(train, vocab_size=8)
    # counts 0:3, 1:2, 2:2, 3:1, the rest 0 -> ties by id
    assert baselines.unigram.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert baselines.positions == 5 and baselines.words == 8 and baselines.seen_previous == 2
    # after 0: 1 (twice), 2 (once), then the unigram order
    assert baselines.bigram[0].tolist() == [1, 2, 0, 3, 4]
    # after 1: 0 and 3 once each, tied -> unigram order puts 0 first
    assert baselines.bigram[1].tolist() == [0, 3, 1, 2, 4]
    # 2 is never followed in train; 7 never seen: the unigram order
    assert baselines.bigram[2].tolist() == baselines.bigram[7].tolist() == [0, 1, 2, 3, 4]

    # positions: 1→3 3→0 0→2 2→2 2→7 7→0 0→1
    hits = baseline_hits(baselines, np.array([1, 3, 0, 2, 2, 7, 0, 1]))
    assert hits["unigram"] == {1: 2, 5: 6}  # 0 twice; all but 7 are in {0 … 4}
    assert hits["bigram"] == {1: 3, 5: 6}  # 3→0, 7→0 (unigram fallback), 0→1; all but 2→7 in the top 5
    # repeat: 2→2 only; top 5 the previous word, then the bigram's others (after 2: 0 1 3 4, no 7)
    assert hits["repeat"] == {1: 1, 5: 6}
    # after 2 the top 5 is 2 0 1 3 4 — the bigram's row without 2, not its first four (0 1 2 3)
    assert baseline_hits(baselines, np.array([2, 4]))["repeat"] == {1: 0, 5: 1}
    assert baseline_hits(baselines, np.array([3, 3, 4]))["repeat"] == {1: 1, 5: 2}  # after 3: 3 0 1 2 4


def test_the_bigram_probabilities_are_absolute_discounting_by_hand():
    from videobert.forecast.predict import baseline_log_loss, bigram_probability, fit_baselines

    # pairs 0→1 twice, 1→0 and 1→2 once: n1 = 2, n2 = 1, D = 2 / (2 + 2·1) = 0.5; word counts
    # 2, 2, 1, 0 of 5 words over 4 words, add-one: 3/9, 3/9, 2/9, 1/9
    baselines = fit_baselines([np.array([0, 1, 0, 1, 2])], vocab_size=4)
    assert baselines.discount == 0.5
    assert baselines.unigram_probability.tolist() == pytest.approx([3 / 9, 3 / 9, 2 / 9, 1 / 9])
    after = lambda p: bigram_probability(baselines, np.full(4, p), np.arange(4))  # noqa: E731
    # after 0 (two positions, one successor): (2 - 0.5 + 0.5·1·3/9) / 2 for 1, 0.5·1·u / 2 for the others
    assert after(0).tolist() == pytest.approx([1 / 12, 5 / 6, 1 / 18, 1 / 36])
    # after 1 (two positions, two successors): 0 and 2 seen once each
    assert after(1).tolist() == pytest.approx([(0.5 + 1 / 3) / 2, 1 / 6, (0.5 + 2 / 9) / 2, 1 / 18])
    # 2 and 3 are never followed in train: the unigram's probabilities
    assert after(2).tolist() == after(3).tolist() == pytest.approx([3 / 9, 3 / 9, 2 / 9, 1 / 9])
    for p in range(4):
        assert after(p).sum() == pytest.approx(1.0)
    # a video 0 1 3: -log P(1 | 0) - log P(3 | 1), and -log u(1) - log u(3)
    loss = baseline_log_loss(baselines, np.array([0, 1, 3]))
    assert loss["bigram"] == pytest.approx(-np.log(5 / 6) - np.log(1 / 18))
    assert loss["unigram"] == pytest.approx(-np.log(3 / 9) - np.log(1 / 9))


def test_the_discount_comes_from_the_pairs_seen_once_and_twice():
    from videobert.forecast.predict import discount_of

    assert discount_of(np.array([1, 1, 1, 2, 5])) == pytest.approx(3 / 5)  # n1 = 3, n2 = 1
    assert discount_of(np.array([1, 1, 2, 2, 2, 2])) == pytest.approx(2 / 10)
    assert discount_of(np.array([1, 1, 1])) == 0.95  # 1, kept below: the seen pairs keep some probability
    assert discount_of(np.array([2, 2])) == 0.05  # 0, kept above: the unseen ones keep some
    assert discount_of(np.array([3, 7])) == discount_of(np.zeros(0, np.int64)) == 0.5


def test_the_bigram_probabilities_sum_to_one_after_every_word():
    from videobert.forecast.predict import bigram_probability, fit_baselines

    rng = np.random.default_rng(4)
    videos = [rng.integers(0, 9, size=int(rng.integers(1, 12))) for _ in range(40)]
    baselines = fit_baselines(videos, vocab_size=12)  # 9 … 11 never occur
    assert 0.05 <= baselines.discount <= 0.95
    words = np.arange(12)
    for previous in range(12):
        probabilities = bigram_probability(baselines, np.full(12, previous), words)
        assert probabilities.min() > 0 and probabilities.sum() == pytest.approx(1.0)


def test_baselines_merge_their_counts_over_many_videos():
    from videobert.forecast import fit_baselines

    rng = np.random.default_rng(1)
    videos = [rng.integers(0, 6, size=int(rng.integers(1, 9))) for _ in range(300)]
    baselines = fit_baselines(videos, vocab_size=6)
    pairs = np.zeros((6, 6), np.int64)
    for words in videos:
        np.add.at(pairs, (words[:-1], words[1:]), 1)
    counts = np.bincount(np.concatenate(videos), minlength=6)
    assert baselines.unigram.tolist() == sorted(range(6), key=lambda w: (-counts[w], w))
    rank = {w: r for r, w in enumerate(baselines.unigram.tolist())}
    for previous in range(6):
        expected = sorted(range(6), key=lambda w: (-pairs[previous, w], rank[w]))[:5]
        assert baselines.bigram[previous].tolist() == expected
    assert baselines.positions == int(pairs.sum())


def test_the_margin_over_a_baseline_resamples_whole_videos():
    from videobert.forecast.predict import paired_difference

    # two videos of 4 positions: +2 and 0 hits over the baseline. A resample holds video 0 twice
    # (+0.5), each once (+0.25) or video 1 twice (0), a quarter, a half and a quarter of the time
    margin = paired_difference(np.array([3, 1]), np.array([1, 1]), np.array([4, 4]))
    assert margin == {"difference": 0.25, "low": 0.0, "high": 0.5}
    # every video gains the same share: nothing to resample
    same = paired_difference(np.array([2, 4, 6]), np.array([1, 2, 3]), np.array([5, 10, 15]))
    assert same["low"] == pytest.approx(0.2) and same["high"] == pytest.approx(0.2) and same["difference"] == pytest.approx(0.2)
    assert paired_difference(np.array([3]), np.array([1]), np.array([4])) == {"difference": 0.5, "low": None, "high": None}


def test_the_margins_interval_matches_the_ratio_estimators_standard_error():
    from videobert.forecast.predict import paired_difference

    rng = np.random.default_rng(3)
    positions = rng.integers(5, 60, size=400)
    gain = rng.binomial(positions, 0.3) - rng.binomial(positions, 0.25)  # per video: model hits - baseline hits
    other = rng.binomial(positions, 0.25)
    margin = paired_difference(other + gain, other, positions)
    ratio = gain.sum() / positions.sum()
    se = np.sqrt(((gain - ratio * positions) ** 2).sum()) / positions.sum()  # the delta method, by videos
    assert margin["difference"] == pytest.approx(ratio)
    assert margin["low"] < ratio < margin["high"]
    assert (margin["high"] - margin["low"]) / 2 == pytest.approx(1.96 * se, rel=0.15)


# ------------------------------------------------------------------------ inputs
def test_the_forecast_input_is_pretrainings_video_only_layout_with_the_future_masked(cycle_run):
    from videobert.forecast import forecast_input
    from videobert.inputs import build_input
    from videobert.inference import load_model

    layout = load_model(cycle_run["run"], "cpu").layout
    sequence = forecast_input(layout, [3, 4, 5], 2, max_len=32)
    reference = build_input(layout, None, [3, 4, 5, 0, 0])
    assert sequence["token_type_ids"].tolist() == reference["token_type_ids"].tolist() == [0, 1, 1, 1, 1, 1, 1, 1]
    expected = reference["input_ids"].copy()
    expected[-3:-1] = layout.mask_id
    assert sequence["input_ids"].tolist() == expected.tolist()
    # too long a context keeps its most recent words
    long = forecast_input(layout, list(range(12)) * 3, 4, max_len=16)
    assert len(long["input_ids"]) == 16
    assert (long["input_ids"][2:-5] - layout.visual_offset).tolist() == (list(range(12)) * 3)[-9:]
    # a sentence on the text side, types 0
    with_text = forecast_input(layout, [1, 2], 1, max_len=32, text_ids=[5, 6])
    assert with_text["input_ids"][:4].tolist() == [layout.cls_id, 5, 6, layout.video_sep_id]
    assert with_text["token_type_ids"].tolist() == [0, 0, 0, 1, 1, 1, 1, 1]


# ------------------------------------------------------------------------ the model
def test_a_model_with_context_beats_the_bigram_and_writes_the_folder(cycle_run, tmp_path):
    from videobert.forecast import ForecastConfig, run

    out = tmp_path / "forecast"
    summary = run(cycle_run["run"], cycle_run["corpus"], out, ForecastConfig(device="cpu"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "config.yaml").is_file() and summary.details == metrics
    assert metrics["predictions"] == SPLITS["test"] * (CLIPS - 1) and metrics["videos"] == SPLITS["test"]
    assert metrics["chance"] == {"top1": 1 / VISUAL_WORDS, "top5": 5 / VISUAL_WORDS}
    model, bigram, unigram = metrics["model"], metrics["bigram"], metrics["unigram"]
    for figures in (model, bigram, unigram):
        assert 0 <= figures["top1"] <= figures["top5"] <= 1
    # a bigram cannot tell what follows 0 (or 6): at best right 6 times in 7
    assert bigram["top1"] <= 6 / 7 + 1e-9
    assert model["top1"] >= bigram["top1"]
    # at t = 1 the model sees one word — no more than the bigram — in a two-word sequence it hardly
    # met in training: those positions (one a video) may miss the top 5, no other
    one_word_contexts = metrics["videos"] / metrics["predictions"]
    assert model["top5"] >= bigram["top5"] - one_word_contexts
    assert model["top1"] >= unigram["top1"] + 0.5
    for name in ("bigram", "unigram", "repeat"):
        for k in ("top1", "top5"):
            margin = metrics[f"model_minus_{name}"][k]
            assert margin["difference"] == pytest.approx(model[k] - metrics[name][k], abs=1e-12)
            assert margin["low"] <= margin["difference"] <= margin["high"]
    # every test video follows its cycle: the model's top-1 margin holds whichever videos are drawn
    assert metrics["model_minus_bigram"]["top1"]["low"] > 0
    # in a cycle the word never repeats
    assert metrics["repeat"]["top1"] == 0
    # the log-loss: the model has learnt the cycle, a bigram is unsure after 0 and 6
    loss = metrics["log_loss"]
    assert loss["chance"] == pytest.approx(np.log(VISUAL_WORDS))
    assert 0 <= loss["model"] < loss["bigram"] < loss["unigram"] < loss["chance"]
    # after 0 (and 6) come two words equally often: the bigram gives each about 1/2, at a quarter of
    # the positions or more
    assert loss["bigram"] >= 0.25 * np.log(1 / 0.51)
    for name in ("bigram", "unigram"):
        margin = metrics[f"model_minus_{name}"]["log_loss"]
        assert margin["difference"] == pytest.approx(loss["model"] - loss[name], abs=1e-12)
        assert margin["low"] <= margin["difference"] <= margin["high"] < 0
    assert set(metrics["model_minus_repeat"]) == {"top1", "top5"}  # repetition gives no distribution
    first, losses, second, third = summary.message.splitlines()
    assert first.startswith(f"forecast (test, {metrics['predictions']} next words, context 8): top-1 ")
    assert losses.startswith(f"log-loss, nats a word (lower is better): model {loss['model']:.3f} | bigram ")
    assert second.startswith("model - bigram: top-1 +") and second.endswith(f"({SPLITS['test']} videos)")
    assert ", log-loss -" in second
    assert third.startswith("model - repeat: top-1 +") and "log-loss" not in third


def test_the_models_hits_are_counted_per_video_in_the_order_read(cycle_run):
    from videobert.forecast.predict import model_hits, next_word_inputs
    from videobert.inference import forward_sequences, load_model

    loaded = load_model(cycle_run["run"], "cpu", batch_tokens=256)
    rng = np.random.default_rng(5)
    # videos of 2 … 40 clips, one of a single clip (no position: skipped) among them; with so few
    # tokens a pass, 64 positions or more go through the model at once: three chunks, the last of
    # one video
    videos = [cycle_words(i, rng, int(n)) for i, n in enumerate([40, 2, 1, 33, 5, 38, 17, 40, 3])]
    together = model_hits(loaded, iter(videos), context=8)
    alone = [model_hits(loaded, iter([words]), context=8) for words in videos if words.size >= 2]
    for k in (1, 5):
        assert together[k].tolist() == [int(a[k][0]) for a in alone]
        assert all(0 <= hits <= words.size - 1 for hits, words in zip(together[k], [v for v in videos if v.size >= 2]))
    assert together["log_loss"] == pytest.approx([float(a["log_loss"][0]) for a in alone], rel=1e-4, abs=1e-5)
    # each video's log-loss: minus the log of the probability its slot gave each word that came
    for words, loss in zip([v for v in videos if v.size >= 2], together["log_loss"]):
        sequences = next_word_inputs(loaded.layout, words, 8)
        _, probabilities = forward_sequences(loaded, sequences, [[len(s["input_ids"]) - 2] for s in sequences],
                                             visual_mean=True)
        expected = -np.log(probabilities[np.arange(words.size - 1), words[1:]].astype(np.float64)).sum()
        assert loss == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_forecast_reproduces_the_cycle(cycle_run):
    from videobert.forecast import forecast
    from videobert.inference import load_model

    loaded = load_model(cycle_run["run"], "cpu")
    for video_id in cycle_run["test"]:
        words = cycle_run["tokens"][video_id].tolist()
        predicted, probabilities = forecast(loaded, words[:10], 7)
        assert predicted == words[10:17], video_id
        assert all(0 < p <= 1 for p in probabilities)
    # the context is cut to max_len (20: 13 words before 4 masks), keeping its end
    words = cycle_run["tokens"][cycle_run["test"][0]].tolist()
    assert forecast(loaded, words[:40], 4)[0] == words[40:44]
    # a sentence on the text side (this corpus has no speech: its pieces are [UNK]) still gives n words
    assert len(forecast(loaded, words[:5], 3, text="the next step")[0]) == 3


# ------------------------------------------------------------------------ the command
def test_the_command_measures_a_split_and_forecasts_one_video_with_a_strip(cycle_run, tmp_path):
    run, corpus = cycle_run["run"], cycle_run["corpus"]
    result = forecast_cli(run, "--corpus", corpus, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run / "forecast-test" / "metrics.json").read_text())
    line = result.stdout.splitlines()[0]
    assert line.startswith(f"forecast (test, {metrics['predictions']} next words, context 8): top-1 ")
    assert "| bigram " in line and "| unigram " in line and "| repeat " in line and "| chance 0.062/0.312" in line

    video_id = cycle_run["test"][1]
    words = cycle_run["tokens"][video_id].tolist()
    strip = tmp_path / "strip.jpg"
    result = forecast_cli(run, video_id, "--corpus", corpus, "--at", "15", "--words", "4", "--context", "6",
                          "--strip", strip, "--strip-size", str(TILE), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    at = 10  # clips 0 … 9 end by 15 s
    assert lines[1].split() == ["context", *map(str, words[at - 6 : at])]
    rows = [line.split() for line in lines[3:7]]
    assert [int(r[0]) for r in rows] == [10, 11, 12, 13]
    assert [int(r[2]) for r in rows] == [int(r[4]) for r in rows] == words[at : at + 4]
    assert all(0 < float(r[3]) <= 1 for r in rows)
    from videobert.forecast.predict import strip_gap

    with Image.open(strip) as image:
        assert image.format == "JPEG" and image.width == 10 * TILE + strip_gap(TILE)
        pixels = np.asarray(image.convert("RGB")).astype(int)
    shown = words[at - 6 : at] + words[at : at + 4]
    for tile, word in enumerate(shown):
        x = tile * TILE + (strip_gap(TILE) if tile >= 6 else 0) + TILE // 2
        assert np.abs(pixels[14 + TILE // 2, x] - exemplar_colour(word)).max() < 24, (tile, word)


def test_the_commands_errors_are_one_line(cycle_run, capsys):
    from pipelines import forecast as forecast_command
    from videobert.store import atomic_save_npy

    run, corpus = str(cycle_run["run"]), str(cycle_run["corpus"])
    video_id = cycle_run["test"][0]
    atomic_save_npy(cycle_run["root"] / "tokens" / "empty_video.npy", np.zeros(0, np.int32))
    for args, code, words in [
        (["no_such_video"], 1, "no_such_video"),
        (["empty_video"], 1, "no visual words"),
        ([video_id, "--at", "999"], 1, "past the end"),
        ([video_id, "--at", "1"], 1, "no whole clip"),
        (["--strip", "x.jpg"], 2, "only with a VIDEO_ID"),
        ([video_id, "-o", "out"], 2, "only without VIDEO_ID"),
        (["--context", "0"], 2, "context"),
    ]:
        assert forecast_command.main([run, *args, "--corpus", corpus, "--device", "cpu", "-q"]) == code, args
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and error[0].startswith("videobert forecast: error: ") and words in error[0], (args, error)
    # a folder that is not a run: refused before the output folder is made
    out = cycle_run["root"] / "never"
    assert forecast_command.main([str(cycle_run["root"] / "no_run"), "--corpus", corpus, "-o", str(out), "-q"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1 and not out.exists()


def test_help_describes_both_uses(capsys):
    from pipelines import forecast as forecast_command

    assert forecast_command.main(["--help"]) == 0
    text = capsys.readouterr().out
    for words in ("VIDEO_ID", "--corpus", "--split", "--at", "--words", "--strip", "--context", "bigram", "unigram",
                  "train split", "pauses", "RUN/forecast-<split>"):
        assert words in text, words
    parser = forecast_command.build_parser()
    assert parser.prog == "videobert forecast"


def test_pretraining_reads_every_clip_for_forecasting_from_the_corpus_tokens(cycle_run, tmp_path, caplog):
    import shutil

    from videobert.corpus import CorpusSplit
    from videobert.inputs import TokenLayout
    from videobert.pretrain.stage import forecast_clips
    from videobert.corpus.joint_vocab import JointVocabulary

    corpus = cycle_run["corpus"]
    layout = TokenLayout.from_vocabulary(JointVocabulary.load(corpus))
    split = CorpusSplit(corpus, "train")
    clips = forecast_clips(corpus, split, layout, True)
    for code, video_id in enumerate(split.video_names()):  # the whole video, not only its examples' clips
        assert clips.words_of(code).tolist() == cycle_run["tokens"][video_id].tolist()
    moved = tmp_path / "corpus"
    shutil.copytree(corpus, moved)
    summary = json.loads((moved / "summary.json").read_text())
    summary["inputs"]["tokens"] = str(tmp_path / "gone")
    (moved / "summary.json").write_text(json.dumps(summary))
    with caplog.at_level("WARNING"):
        assert forecast_clips(moved, CorpusSplit(moved, "train"), layout, True) is None
    assert "is gone: forecasting sequences read the sentences' clips only" in caplog.text
