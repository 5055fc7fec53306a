"""Training sequences: layouts, truncation, masking, negatives, augmentation, batching."""

import numpy as np
import pytest
import torch

from videobert.inputs import IGNORE, TokenLayout, build_input
from videobert.pretrain.data import (
    GROUP_PAIR_TEXT, GROUP_PAIR_VIDEO, GROUP_TEXT, GROUP_VIDEO, PAIR, TEXT, VIDEO, DataConfig, PretrainExamples,
    StepBatches, VideoClips, collate_training, mask_sequence, validation_batches,
)
from videobert.corpus.reader import CorpusSplit
from videobert.errors import ConfigError

T, V = 50, 30
LAYOUT = TokenLayout(T, V, pad_id=0, cls_id=2, sep_id=3, mask_id=4, text_special_ids=(0, 1, 2, 3, 4))
SEP_VIDEO, OFFSET = T, T + 1


def corpus(videos=4, sentences=6, rng_seed=0):
    """Sentences with distinct text ids per sentence and 3 clips each, overlapping by one clip."""
    rng = np.random.default_rng(rng_seed)
    examples = []
    for v in range(videos):
        for i in range(sentences):
            silent = i == 3
            examples.append({
                "video_id": f"v{v}", "index": i, "start": 2.0 * i, "end": 2.0 * i + 3,
                "text": "" if silent else "words", "text_ids": [] if silent else rng.integers(5, T, size=4).tolist(),
                "video_ids": rng.integers(0, V, size=3).tolist(), "first_clip": 2 * i,
            })
    return examples


def test_layout_of_each_sequence_kind():
    pair = build_input(LAYOUT, [10, 11], [0, 7, 29])
    assert pair["input_ids"].tolist() == [2, 10, 11, SEP_VIDEO, OFFSET, OFFSET + 7, OFFSET + 29, 3]
    assert pair["token_type_ids"].tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    text = build_input(LAYOUT, [10, 11], None)
    assert text["input_ids"].tolist() == [2, 10, 11, 3] and text["token_type_ids"].tolist() == [0, 0, 0, 0]
    video = build_input(LAYOUT, [], [5])
    assert video["input_ids"].tolist() == [2, SEP_VIDEO, OFFSET + 5, 3] and video["token_type_ids"].tolist() == [0, 1, 1, 1]
    with pytest.raises(ValueError):
        build_input(LAYOUT, [], [])


def test_truncation_cuts_video_first_then_whole_sentences():
    text, video = list(range(10, 25)), list(range(25))
    cut = build_input(LAYOUT, text, video, max_len=40)
    ids = cut["input_ids"]
    assert len(ids) == 40
    assert ids[1:16].tolist() == text and (ids >= OFFSET).sum() == 40 - 3 - 15  # video cut to the rest
    crowded = build_input(LAYOUT, list(range(5, 45)), video, max_len=30, sentence_ends=[12, 25, 40])
    kept_video = int((crowded["input_ids"] >= OFFSET).sum())
    assert kept_video == 13  # half of the 27 tokens of room
    assert crowded["input_ids"][1:13].tolist() == list(range(5, 17))  # the first sentence, whole
    assert len(crowded["input_ids"]) == 1 + 12 + 1 + 13 + 1


def test_masking_rate_split_and_specials():
    rng = np.random.default_rng(0)
    sequence = build_input(LAYOUT, list(range(5, 45)), list(range(30)))
    ids = sequence["input_ids"]
    targets = actions = 0
    masked_count = kept = swapped_in_range = 0
    for _ in range(400):
        masked, labels = mask_sequence(LAYOUT, sequence, rng, 0.15, at_least_one=True)
        chosen = labels != IGNORE
        assert np.array_equal(labels[chosen], ids[chosen])
        assert not np.isin(ids[chosen], (2, 3, SEP_VIDEO)).any()  # never a special token
        assert np.array_equal(masked[~chosen], ids[~chosen])
        targets += chosen.sum()
        masked_count += (masked[chosen] == LAYOUT.mask_id).sum()
        kept += (masked[chosen] == ids[chosen]).sum()
        swapped = chosen & (masked != ids) & (masked != LAYOUT.mask_id)
        same_modality = (masked[swapped] >= OFFSET) == (ids[swapped] >= OFFSET)
        swapped_in_range += same_modality.sum()
        actions += swapped.sum()
        assert not np.isin(masked[swapped], (0, 1, 2, 3, 4, SEP_VIDEO)).any()
    assert abs(targets / (400 * 70) - 0.15) < 0.01
    assert abs(masked_count / targets - 0.8) < 0.03
    assert abs(kept / targets - 0.1) < 0.03  # includes the rare random draw of the same token
    assert swapped_in_range == actions


def options(**overrides):
    base = dict(max_len=64, concat_prob=0.0, subsample_max=1)
    return DataConfig(**{**base, **overrides})


def test_pairs_are_half_misaligned_and_only_aligned_pairs_have_targets():
    examples = PretrainExamples(corpus(), LAYOUT, options())
    rng = np.random.default_rng(0)
    pairs = [examples.sequence(0, rng, kind=PAIR) for _ in range(400)]
    aligned = np.array([p["aligned"] for p in pairs])
    assert 0.4 < aligned.mean() < 0.6
    for p in pairs:
        ids = p["input_ids"]
        assert ids[0] == LAYOUT.cls_id and ids[-1] == LAYOUT.sep_id and (ids == SEP_VIDEO).sum() == 1
        if not p["aligned"]:
            assert (p["labels"] == IGNORE).all()
    # 4 words and 3 clips: 0.6 and 0.45 expected targets, rounded stochastically per side
    with_targets = np.mean([(p["labels"] != IGNORE).any() for p in pairs if p["aligned"]])
    assert abs(with_targets - (1 - 0.4 * 0.55)) < 0.07
    masked_misaligned = np.mean([(p["input_ids"] == LAYOUT.mask_id).any() for p in pairs if not p["aligned"]])
    masked_aligned = np.mean([(p["input_ids"] == LAYOUT.mask_id).any() for p in pairs if p["aligned"]])
    assert abs(masked_misaligned - masked_aligned) < 0.15  # no "no mask = misaligned" shortcut


@pytest.mark.parametrize("mode", ["other_video", "same_video_distant"])
def test_negatives_come_from_where_configured(mode):
    data = corpus()
    examples = PretrainExamples(data, LAYOUT, options(negatives=mode, negative_min_distance=2, mask_prob=0.01))
    video_of = {tuple(ex["video_ids"]): ex for ex in data}
    rng = np.random.default_rng(1)
    for _ in range(100):
        p = examples.sequence(1, rng, kind=PAIR, aligned=False)
        visual = [int(i) - OFFSET for i in p["input_ids"] if i >= OFFSET]
        source = video_of.get(tuple(visual))
        if source is None:  # a masked or swapped visual word
            continue
        if mode == "other_video":
            assert source["video_id"] != "v0"
        else:
            assert source["video_id"] == "v0" and abs(source["index"] - 1) >= 2


def test_concatenation_merges_neighbours_and_their_clips():
    data = corpus(videos=1)
    examples = PretrainExamples(data, LAYOUT, options(concat_prob=1.0, concat_max=2, mask_prob=0.01))
    text, ends, video = examples._merge(examples._following(0, 2))
    assert text == data[0]["text_ids"] + data[1]["text_ids"] and ends == [4, 8]
    # clips 0,1,2 then 2,3,4: the shared clip 2 appears once
    assert video == data[0]["video_ids"] + data[1]["video_ids"][1:]
    lengths = {len(examples.sequence(0, np.random.default_rng(s), kind=TEXT)["input_ids"]) for s in range(10)}
    assert lengths == {2 + 8}


def test_forecasting_sequences_without_the_videos_clips_read_runs_of_sentence_clips():
    data = corpus(videos=1)
    examples = PretrainExamples(data, LAYOUT, options(forecast_prob=1.0, forecast_max=3, concat_max=3, subsample_max=5),
                                kinds=(VIDEO,))
    _, _, clips = examples._merge(examples._following(0, 3))  # 7 clips of sentences 0, 1, 2: never subsampled
    masked_counts, lengths, starts = set(), set(), set()
    for seed in range(200):
        sequence = examples.sequence(0, np.random.default_rng(seed))
        ids, labels = sequence["input_ids"], sequence["labels"]
        assert ids[0] == LAYOUT.cls_id and ids[1] == SEP_VIDEO and ids[-1] == LAYOUT.sep_id
        targets = np.flatnonzero(labels != IGNORE)
        count = targets.size
        masked_counts.add(count)
        assert list(targets) == list(range(len(ids) - 1 - count, len(ids) - 1))  # the last words, in a row
        assert (ids[targets] == LAYOUT.mask_id).all() and 1 <= count < len(ids) - 3  # one word of context at least
        words = list(ids[2 : len(ids) - 1 - count] - OFFSET) + list(labels[targets] - OFFSET)
        # a run of consecutive clips, the context unmasked before its masked end
        start = next(s for s in range(len(clips)) if clips[s : s + len(words)] == words)
        lengths.add(len(words))
        starts.add(start)
    assert masked_counts == {1, 2, 3}
    assert lengths == set(range(2, len(clips) + 1))  # contexts of every length …
    assert starts == set(range(len(clips) - 1))  # … from everywhere in the clips


def paused_video(video_id="v0", clips=20, firsts=(1, 6, 12), seed=0):
    """A video of ``clips`` distinct visual words, narrated in sentences of 3 clips from ``firsts``
    (clip 0, 4-5, 9-11 and 15-19 are pauses): its corpus rows, and every clip's word."""
    words = np.random.default_rng(seed).permutation(V)[:clips]
    rows = [{"video_id": video_id, "index": i, "start": 1.5 * f, "end": 1.5 * (f + 3), "text": "words",
             "text_ids": [10 + i, 11], "video_ids": words[f : f + 3].tolist(), "first_clip": f}
            for i, f in enumerate(firsts)]
    return rows, words


def test_forecasting_sequences_read_every_clip_of_the_video_pauses_included():
    rows, words = paused_video()
    clips = VideoClips(words, np.array([0, words.size]))
    examples = PretrainExamples(rows, LAYOUT, options(forecast_prob=1.0, forecast_max=3, max_len=12), kinds=(VIDEO,),
                                clips=clips)
    first_masked, contexts = set(), set()
    for seed in range(600):
        position = seed % len(examples)
        sequence = examples.sequence(position, np.random.default_rng(seed))
        ids, labels = sequence["input_ids"], sequence["labels"]
        assert ids[0] == LAYOUT.cls_id and ids[1] == SEP_VIDEO and ids[-1] == LAYOUT.sep_id and len(ids) <= 12
        targets = np.flatnonzero(labels != IGNORE)
        assert 1 <= targets.size <= 3 and list(targets) == list(range(len(ids) - 1 - targets.size, len(ids) - 1))
        assert (ids[targets] == LAYOUT.mask_id).all()
        run = list(ids[2 : len(ids) - 1 - targets.size] - OFFSET) + list(labels[targets] - OFFSET)
        start = int(np.flatnonzero(words == run[0])[0])
        assert list(words[start : start + len(run)]) == run  # consecutive clips of the whole video
        masked_at = start + len(run) - targets.size
        owned = {0: range(1, 6), 1: range(6, 12), 2: range(12, 20)}[position]  # to the next sentence's first clip
        assert masked_at in owned
        first_masked.add(masked_at)
        contexts.add(masked_at - start)
    assert first_masked == set(range(1, 20))  # every clip after the first, those of pauses too
    assert contexts == set(range(1, 9))  # contexts of every length that fits max_len with one mask


def test_forecasting_contexts_stop_at_forecast_context_and_masks_at_forecast_max():
    rows, words = paused_video()
    clips = VideoClips(words, np.array([0, words.size]))
    examples = PretrainExamples(rows, LAYOUT, options(forecast_prob=1.0, forecast_max=1, forecast_context=3, max_len=24),
                                kinds=(VIDEO,), clips=clips)
    contexts, first_masked = set(), set()
    for seed in range(300):
        sequence = examples.sequence(seed % len(examples), np.random.default_rng(seed))
        ids, labels = sequence["input_ids"], sequence["labels"]
        targets = np.flatnonzero(labels != IGNORE)
        assert list(targets) == [len(ids) - 2]  # one mask, right before [SEP]: the metric's slot
        context = list(ids[2:-2] - OFFSET)
        masked_at = int(np.flatnonzero(words == labels[targets[0]] - OFFSET)[0])
        assert context == list(words[masked_at - len(context) : masked_at])  # the clips right before it
        contexts.add(len(context))
        first_masked.add(masked_at)
    assert contexts == {1, 2, 3}  # up to forecast_context words, though 20 would fit
    assert first_masked == set(range(1, 20))
    with pytest.raises(ConfigError, match="forecast_context"):
        options(forecast_context=-1).check()


def test_video_clips_are_read_from_the_tokens_folder_when_they_match_the_corpus(tmp_path):
    good, good_words = paused_video("good", seed=1)
    changed, changed_words = paused_video("changed", seed=2)
    missing, _ = paused_video("missing", seed=3)
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    (tokens / "tokens.json").write_text("{}")
    np.save(tokens / "good.npy", good_words.astype(np.int16))
    np.save(tokens / "changed.npy", (changed_words + 1) % V)  # re-tokenized since the corpus was built
    split = CorpusSplit.from_examples(good + changed + missing)
    clips, unusable = VideoClips.read(split, tokens, V, chunk=2)
    assert unusable == 2
    assert clips.words_of(0).tolist() == good_words.tolist()
    assert clips.words_of(1) is None and clips.words_of(2) is None
    # the other videos' forecasting sequences fall back to their sentences' clips
    examples = PretrainExamples(split, LAYOUT, options(forecast_prob=1.0), kinds=(VIDEO,), clips=clips)
    sentence_clips = set(changed_words[[1, 2, 3, 6, 7, 8, 12, 13, 14]].tolist())
    for seed in range(50):
        sequence = examples.sequence(3 + seed % 3, np.random.default_rng(seed))
        run = sequence["input_ids"][2:-1]
        masked = sequence["labels"][2:-1]
        words_seen = np.where(run == LAYOUT.mask_id, masked, run) - OFFSET
        assert set(words_seen.tolist()) <= sentence_clips


def test_subsampling_rates_stay_within_bounds():
    def counts(clips):
        data = [{"video_id": "a", "index": 0, "start": 0, "end": 30, "text": "", "text_ids": [],
                 "video_ids": list(range(clips)), "first_clip": 0}]
        examples = PretrainExamples(data, LAYOUT, options(subsample_max=5, mask_prob=0.01), kinds=(VIDEO,))
        found = set()
        for seed in range(200):
            ids = examples.sequence(0, np.random.default_rng(seed))["input_ids"]
            found.add(int((ids >= OFFSET).sum() + (ids == LAYOUT.mask_id).sum()))
        return found

    assert counts(20) == {20, 10, 7, 6, 5, 4}  # rates 1 … 5, with their phases
    assert counts(4) == {4, 2}  # capped at half the length: never a single word
    assert counts(3) == {3}


def test_collate_targets_index_the_right_positions():
    examples = PretrainExamples(corpus(), LAYOUT, options())
    rng = np.random.default_rng(2)
    sequences = [examples.sequence(i, rng, kind=k) for i, k in [(0, TEXT), (1, VIDEO), (2, PAIR), (4, PAIR)]]
    batch = collate_training(sequences, LAYOUT)
    flat_labels = np.full(batch["input_ids"].numel(), IGNORE)
    length = batch["input_ids"].shape[1]
    for row, s in enumerate(sequences):
        flat_labels[row * length : row * length + len(s["labels"])] = s["labels"]
    assert np.array_equal(flat_labels[batch["mlm_positions"].numpy()], batch["mlm_labels"].numpy())
    groups = batch["mlm_groups"].numpy()
    assert batch["group_counts"] == np.bincount(groups, minlength=4).tolist()
    rows = batch["mlm_positions"].numpy() // length
    assert set(groups[rows == 0]) <= {GROUP_TEXT} and set(groups[rows == 1]) <= {GROUP_VIDEO}
    pair_groups = groups[rows >= 2]
    visual = batch["mlm_labels"].numpy()[rows >= 2] >= OFFSET
    assert np.array_equal(pair_groups, np.where(visual, GROUP_PAIR_VIDEO, GROUP_PAIR_TEXT))
    assert batch["align_rows"].tolist() == [2, 3]
    assert batch["tokens"] == sum(len(s["input_ids"]) for s in sequences)
    assert batch["attention_mask"].sum(1).tolist() == [len(s["input_ids"]) for s in sequences]


def test_step_batches_are_deterministic_and_split_over_ranks():
    examples = PretrainExamples(corpus(videos=8), LAYOUT, options(concat_prob=0.5, subsample_max=3))
    single = StepBatches(examples, batch_size=8, grad_accum=2, seed=3)
    again = StepBatches(examples, batch_size=8, grad_accum=2, seed=3)
    for step in (0, 5, 17):
        for a, b in zip(single[step], again[step]):
            assert torch.equal(a["input_ids"], b["input_ids"])
    ranks = [StepBatches(examples, batch_size=8, grad_accum=2, seed=3, rank=r, world_size=2) for r in range(2)]
    step = 7
    rows_single = [row for mb in single[step] for row in _rows(mb)]
    rows_ranks = [row for accum in range(2) for r in range(2) for row in _rows(ranks[r][step][accum])]
    assert sorted(rows_single) == sorted(rows_ranks)
    assert single.position(step) == {"step": 7, "epoch": 7 // single.batches_per_epoch,
                                     "batch": 7 % single.batches_per_epoch}


def _rows(batch):
    return [tuple(ids[mask.bool()].tolist()) for ids, mask in zip(batch["input_ids"], batch["attention_mask"])]


def test_each_epoch_visits_every_sentence_once_in_length_buckets():
    examples = PretrainExamples(corpus(videos=10), LAYOUT, options())
    batches = StepBatches(examples, batch_size=6, grad_accum=1, seed=0, bucket_batches=2)
    epoch = np.concatenate([batches.global_batch(s) for s in range(batches.batches_per_epoch)])
    assert len(set(epoch.tolist())) == len(epoch) == batches.batches_per_epoch * 6
    spreads = [np.ptp(examples.lengths[batches.global_batch(s)]) for s in range(batches.batches_per_epoch)]
    assert np.mean(spreads) <= np.ptp(examples.lengths)


def test_validation_set_is_fixed_and_covers_each_objective():
    examples = PretrainExamples(corpus(), LAYOUT, options())
    first = validation_batches(examples, batch_size=8, seed=0, max_sentences=12)
    second = validation_batches(examples, batch_size=8, seed=0, max_sentences=12)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(first, second))
    counts = np.sum([b["group_counts"] for b in first], axis=0)
    assert (counts > 0).all()
    sequences = sum(len(b["input_ids"]) for b in first)
    assert sequences == 10 * 3 + 2  # sentence 3 of each video is silent: video only


def test_data_loader_workers_build_the_same_batches():
    examples = PretrainExamples(corpus(videos=8), LAYOUT, options(concat_prob=0.5, subsample_max=3))
    batches = StepBatches(examples, batch_size=8, grad_accum=1, seed=1)
    loader = torch.utils.data.DataLoader(batches, batch_size=None, sampler=range(3, 9), num_workers=2,
                                         collate_fn=lambda item: item)
    for step, micro_batches in zip(range(3, 9), loader):
        assert torch.equal(micro_batches[0]["input_ids"], batches[step][0]["input_ids"])
        assert torch.equal(micro_batches[0]["mlm_labels"], batches[step][0]["mlm_labels"])
