"""Retrieval metrics against brute force, pair scoring, two-stage search, zero-shot and
text-to-video — on random models and on a tiny model that has learnt the synthetic corpus."""

import itertools

import numpy as np
import pytest
import torch

from videobert.errors import ConfigError
from videobert.model import ModelConfig, VideoBERT
from videobert.inputs import TokenLayout, build_input
from videobert.retrieval.generate import text_to_video
from videobert.inference import LoadedModel, length_batches
from videobert.retrieval.metrics import chance_metrics, metrics_from_counts, retrieval_metrics
from videobert.retrieval.exhaustive import exhaustive_counts
from videobert.retrieval.metrics import true_match_counts
from videobert.retrieval.scoring import align_accuracy, score_matrix, score_pairs
from videobert.retrieval.two_stage import DualFirstStage, two_stage_ladder
from videobert.retrieval.stage import EvaluateConfig, evaluate
from videobert.retrieval.zeroshot import class_scores, load_spec, top_k_accuracy
from videobert.synthetic import ACTION_WORDS, ACTIONS, ATTRIBUTES, COLOURS
from videobert.synthetic.stage import write_labels


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest, and repeatably, on one thread


# ------------------------------------------------------------------------ metrics
def brute_force(scores: np.ndarray, ties: str) -> dict[str, float]:
    """Every tie-breaking order of the gallery, one by one: the average over all of them
    (``average``), or the worst (``pessimistic``), of each query's rank and top-k hits."""
    n = scores.shape[0]
    ranks = np.empty((n, 0))
    for priority in itertools.permutations(range(n)):
        order = [np.lexsort((np.array(priority), -scores[i])) for i in range(n)]
        ranks = np.column_stack([ranks, [int(np.flatnonzero(order[i] == i)[0]) + 1 for i in range(n)]])
    per_query = ranks.mean(axis=1) if ties == "average" else ranks.max(axis=1)
    hits = {k: (ranks <= k).mean(axis=1) if ties == "average" else (per_query <= k).astype(float) for k in (1, 5, 10)}
    return {"r1": hits[1].mean(), "r5": hits[5].mean(), "r10": hits[10].mean(),
            "median_rank": float(np.median(per_query)), "mean_rank": per_query.mean()}


def argsort_ranks(scores: np.ndarray) -> np.ndarray:
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.array([int(np.flatnonzero(order[i] == i)[0]) + 1 for i in range(scores.shape[0])])


@pytest.mark.parametrize("n", [1, 3, 12, 40])
def test_metrics_equal_sorting_on_untied_random_scores(n):
    scores = np.random.default_rng(n).standard_normal((n, n))
    ranks = argsort_ranks(scores)
    for ties in ("average", "pessimistic"):
        metrics = retrieval_metrics(scores, ties)
        for k in (1, 5, 10):
            assert metrics[f"r{k}"] == pytest.approx(np.mean(ranks <= k))
        assert metrics["median_rank"] == pytest.approx(np.median(ranks))
        assert metrics["mean_rank"] == pytest.approx(ranks.mean())


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", ["average", "pessimistic"])
def test_metrics_on_tied_scores_match_every_tie_breaking_order(seed, ties):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, size=(6, 6)).astype(np.float32)  # many ties
    reference = brute_force(scores, ties)
    metrics = retrieval_metrics(scores, ties)
    assert metrics == pytest.approx(reference)


def test_ties_never_raise_recall_above_chance():
    n = 30
    constant = np.zeros((n, n))
    assert retrieval_metrics(constant, "average") == pytest.approx(
        {f"r{k}": k / n for k in (1, 5, 10)} | {"median_rank": (n + 1) / 2, "mean_rank": (n + 1) / 2})
    assert retrieval_metrics(constant, "pessimistic") == {"r1": 0.0, "r5": 0.0, "r10": 0.0,
                                                           "median_rank": n, "mean_rank": n}
    # collapsing scores into ties can only lower recall below that of any order that breaks them
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((n, n)) + 3 * np.eye(n)
    rounded = np.round(scores)
    for k in ("r1", "r5", "r10"):
        best_order = retrieval_metrics(rounded + 1e-6 * np.eye(n))[k]  # ties broken for the true item
        assert retrieval_metrics(rounded, "pessimistic")[k] <= retrieval_metrics(rounded)[k] <= best_order


def test_chance_levels_and_bad_inputs():
    assert chance_metrics(4) == {"chance_r1": 0.25, "chance_r5": 1.0, "chance_r10": 1.0,
                                 "chance_median_rank": 2.5, "chance_mean_rank": 2.5}
    with pytest.raises(ValueError, match="square"):
        retrieval_metrics(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(np.full((2, 2), np.nan))


# ------------------------------------------------------------------------ scoring
TEXT_VOCAB, VISUAL_VOCAB = 50, 20
LAYOUT = TokenLayout(TEXT_VOCAB, VISUAL_VOCAB, pad_id=0, cls_id=2, sep_id=3, mask_id=4, text_special_ids=(0, 1, 2, 3, 4))


def random_model(batch_tokens: int = 8192) -> LoadedModel:
    torch.manual_seed(0)
    model = VideoBERT(ModelConfig.preset("tiny", TEXT_VOCAB, VISUAL_VOCAB, initializer_range=0.2)).eval()
    return LoadedModel(model, None, LAYOUT, torch.device("cpu"), "fp32", 64, batch_tokens)


def random_gallery(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    texts = [list(rng.integers(5, TEXT_VOCAB, size=rng.integers(2, 9))) for _ in range(n)]
    videos = [list(rng.integers(0, VISUAL_VOCAB, size=rng.integers(1, 7))) for _ in range(n)]
    texts[3], videos[5] = texts[1], videos[2]  # duplicates, as real galleries have
    return texts, videos


def test_batched_scores_equal_one_unpadded_pair_at_a_time():
    texts, videos = random_gallery(7)
    expected = np.empty((7, 7), np.float32)
    loaded = random_model()
    with torch.no_grad():
        for i, j in itertools.product(range(7), range(7)):
            sequence = build_input(LAYOUT, texts[i], videos[j], 64)
            out = loaded.model(torch.from_numpy(sequence["input_ids"])[None], torch.from_numpy(sequence["token_type_ids"])[None])
            expected[i, j] = float(out.align_logits[0])
    for batch_tokens in (16, 256, 8192):  # one pair per batch … everything in one batch
        np.testing.assert_allclose(score_matrix(random_model(batch_tokens), texts, videos), expected, atol=1e-5, rtol=1e-5)


def test_scoring_is_permutation_consistent():
    texts, videos = random_gallery(12)
    loaded = random_model(batch_tokens=96)
    scores = score_matrix(loaded, texts, videos)
    assert scores.std() > 0.05  # the random model does tell pairs apart
    perm = np.random.default_rng(1).permutation(12)
    shuffled = score_matrix(loaded, [texts[i] for i in perm], [videos[i] for i in perm])
    assert np.array_equal(shuffled, scores[np.ix_(perm, perm)])  # bit for bit
    assert retrieval_metrics(shuffled) == retrieval_metrics(scores)
    gallery_only = score_matrix(loaded, texts, [videos[i] for i in perm])
    assert np.array_equal(gallery_only, scores[:, perm])
    assert np.array_equal(argsort_ranks(scores), argsort_ranks(gallery_only[:, np.argsort(perm)]))


def random_first_stage(texts, videos, seed: int = 0, dim: int = 8) -> DualFirstStage:
    """Unit vectors for a gallery's texts and videos, equal contents getting equal vectors (so that
    duplicates tie in the first stage as they do with a real dual encoder)."""
    rng = np.random.default_rng(seed)

    def vectors(items):
        table = {}
        out = np.stack([table.setdefault(tuple(item), rng.normal(size=dim)) for item in items]).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return DualFirstStage(vectors(texts), vectors(videos))


def test_two_stage_with_k_covering_the_gallery_equals_exhaustive():
    texts, videos = random_gallery(10, seed=2)
    loaded = random_model()
    scores = score_matrix(loaded, texts, videos)
    ladder = two_stage_ladder(loaded, texts, videos, [10, 1], random_first_stage(texts, videos))
    result = ladder.by_k[10]
    assert result.first_stage_recall == {"t2v": 1.0, "v2t": 1.0}
    for direction, matrix in (("t2v", scores), ("v2t", scores.T)):
        assert metrics_from_counts(*getattr(result, direction)) == retrieval_metrics(matrix)
    narrow = ladder.by_k[1]
    assert narrow.pairs_scored == 20
    assert metrics_from_counts(*narrow.t2v)["r1"] <= narrow.first_stage_recall["t2v"]
    with pytest.raises(ConfigError):
        two_stage_ladder(loaded, texts, videos, [0], random_first_stage(texts, videos))


def explicit_two_stage_ranks(first: np.ndarray, cross: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query (row), the true item's best and worst rank in the two-stage ranking built by
    hand: the k best by first-stage score (ties to the lower index) ordered by cross score, then
    the rest by first-stage score."""
    n = first.shape[0]
    best, worst = np.empty(n), np.empty(n)
    for i in range(n):
        shortlist = np.lexsort((np.arange(n), -first[i]))[:k]
        key = {int(j): (0, -float(cross[i, j])) for j in shortlist}
        key.update({j: (1, -float(first[i, j])) for j in range(n) if j not in key})
        worst[i] = sum(key[j] <= key[i] for j in range(n))
        best[i] = sum(key[j] < key[i] for j in range(n)) + 1
    return best, worst


@pytest.mark.parametrize("k", [1, 3])
def test_two_stage_ranks_equal_the_ranking_built_by_hand(k, monkeypatch):
    from videobert.retrieval import two_stage

    texts, videos = random_gallery(12, seed=3)
    texts[7] = texts[2]  # a tie in both stages
    loaded = random_model()
    cross = score_matrix(loaded, texts, videos)
    stage = random_first_stage(texts, videos, seed=5)
    first = stage.block(0, 12).T  # [texts, videos], the products the search itself computes
    monkeypatch.setattr(two_stage, "BLOCK_SCORES", 12 * 5)  # blocks of 5 texts: the running top K across blocks
    ladder = two_stage_ladder(loaded, texts, videos, [k], stage)
    result = ladder.by_k[k]
    for counts, first_scores, cross_scores in ((result.t2v, first, cross), (result.v2t, first.T, cross.T)):
        best, worst = explicit_two_stage_ranks(np.asarray(first_scores, np.float32), cross_scores, k)
        greater, equal = counts
        np.testing.assert_array_equal(greater + 1, best)
        np.testing.assert_array_equal(greater + equal, worst)
    # the first stage alone: the dual encoder's own ranking of every true item
    for direction, matrix in (("t2v", first), ("v2t", first.T)):
        assert metrics_from_counts(*ladder.first_stage[direction]) == retrieval_metrics(matrix)
    sample = np.array([1, 4, 9])
    part = two_stage_ladder(loaded, texts, videos, [k], stage, queries=sample).by_k[k]
    np.testing.assert_array_equal(part.t2v[0], result.t2v[0][sample])
    np.testing.assert_array_equal(part.v2t[1], result.v2t[1][sample])


@pytest.mark.parametrize("batch_tokens", [16, 96, 8192])
def test_exhaustive_counts_equal_the_full_score_matrix_bit_for_bit(batch_tokens, monkeypatch):
    from videobert.retrieval import exhaustive

    texts, videos = random_gallery(15, seed=4)
    texts[9], videos[11] = texts[4], videos[4]  # a duplicate pair: the true item ties with another
    loaded = random_model(batch_tokens)
    scores = score_matrix(loaded, texts, videos)
    for cache in (exhaustive.CACHE_SCORES, 0):  # the first pass's scores kept, or scored again
        monkeypatch.setattr(exhaustive, "CACHE_SCORES", cache)
        counts = exhaustive_counts(loaded, texts, videos)
        for got, matrix in ((counts.t2v, scores), (counts.v2t, scores.T)):
            expected = true_match_counts(matrix)
            np.testing.assert_array_equal(got[0], expected[0])
            np.testing.assert_array_equal(got[1], expected[1])
    sample = np.array([0, 4, 9, 14])
    part = exhaustive_counts(loaded, texts, videos, sample)
    np.testing.assert_array_equal(part.queries, sample)
    for direction in ("t2v", "v2t"):
        for got, whole in zip(getattr(part, direction), getattr(counts, direction)):
            np.testing.assert_array_equal(got, whole[sample])
    assert part.pairs_scored < counts.pairs_scored <= 15 * 15


def test_the_true_pair_must_tie_with_itself():
    """An equal count of 0 would make recall 1 whatever the scores: the metrics refuse it, and
    exhaustive ranking checks that each true pair scored the same in its two passes."""
    from videobert.retrieval import exhaustive

    with pytest.raises(ValueError, match="equal count 0 for query 1"):
        metrics_from_counts(np.array([0, 40, 2]), np.array([1, 0, 1]))
    texts, videos = random_gallery(8, seed=5)
    loaded = random_model(batch_tokens=32)
    forward = exhaustive.forward_sequences
    calls = {"n": 0}

    def drifting(*args, **kwargs):  # the second pass sees other scores than the first
        calls["n"] += 1
        logits, *rest = forward(*args, **kwargs)
        return (logits + (1e-3 if calls["n"] > 1 else 0.0), *rest)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exhaustive, "CACHE_SCORES", 0)
        patch.setattr(exhaustive, "forward_sequences", drifting)
        with pytest.raises(RuntimeError, match="did not tie with itself"):
            exhaustive_counts(loaded, texts, videos)


def test_alignment_partners_are_those_of_the_quadratic_rule():
    """The O(N) partner choice draws the same partner as the list of every other video's examples."""
    from videobert.retrieval import scoring

    rng = np.random.default_rng(0)
    for groups in (rng.integers(0, 4, size=30), np.zeros(9, int), np.repeat([3, 1, 2], [1, 5, 2])):
        n, seed = len(groups), int(rng.integers(100))
        draws = np.random.default_rng([seed, 0xA119])
        aligned = np.zeros(n, bool)
        aligned[draws.permutation(n)[: (n + 1) // 2]] = True
        expected = np.arange(n)
        for i in np.flatnonzero(~aligned):
            others = np.flatnonzero(groups != groups[i])
            if others.size == 0:
                others = np.flatnonzero(np.arange(n) != i)
            expected[i] = others[draws.integers(others.size)]
        seen = {}

        def record(loaded, texts, videos, pairs, progress=None):
            seen["pairs"] = pairs
            return np.zeros(len(pairs), np.float32)

        original = scoring.score_pairs
        scoring.score_pairs = record
        try:
            align_accuracy(None, [[5]] * n, [[1]] * n, groups, seed)
        finally:
            scoring.score_pairs = original
        np.testing.assert_array_equal(seen["pairs"][:, 1], expected)


def bf16_scores_close_to_fp32(device: torch.device):
    texts, videos = random_gallery(12)
    expected = score_matrix(random_model(), texts, videos)
    model = random_model().model.to(device)
    got = score_matrix(LoadedModel(model, None, LAYOUT, device, "bf16", 64, 8192), texts, videos)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=0.03 * np.abs(expected).max())  # bf16: 8 significant bits
    # the orders agree but for near-ties
    assert np.corrcoef(np.argsort(np.argsort(got.ravel())), np.argsort(np.argsort(expected.ravel())))[0, 1] > 0.99


def test_bf16_autocast_scores_agree_with_fp32_on_cpu():
    bf16_scores_close_to_fp32(torch.device("cpu"))


@pytest.mark.gpu
def test_bf16_scores_on_gpu_agree_with_fp32_on_cpu():
    bf16_scores_close_to_fp32(torch.device("cuda"))


def test_length_batches_cover_every_row_once_within_the_token_budget():
    rng = np.random.default_rng(0)
    for budget in (1, 40, 500):
        lengths = rng.integers(1, 60, size=300)
        batches = list(length_batches(lengths, budget))
        assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(300))
        for rows in batches:
            assert len(rows) == 1 or len(rows) * lengths[rows].max() <= budget
        # greedy: the next row would not have fitted
        for rows, following in zip(batches, batches[1:]):
            assert (len(rows) + 1) * max(lengths[rows].max(), lengths[following[0]]) > budget


def test_score_pairs_refuses_empty_sides():
    with pytest.raises(ValueError, match="at least one token"):
        score_pairs(random_model(), [[5]], [[]], np.array([[0, 0]]))


# ------------------------------------------------------------------------ zero-shot pieces
def test_class_scores_softmax_over_candidates_summed_per_class():
    logits = np.zeros((1, 10), np.float32)
    logits[0, [5, 6, 7, 9]] = [np.log(1.0), np.log(3.0), np.log(4.0), 50.0]  # 9 is not a candidate
    scores = class_scores(logits, np.array([5, 6, 7]), np.array([0, 0, 1]), 2)
    np.testing.assert_allclose(scores, [[0.5, 0.5]])
    ranked = np.array([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2]])
    assert top_k_accuracy(ranked, np.array([2, 0]), 1) == 0.0  # a tie with the true class counts against it
    assert top_k_accuracy(ranked, np.array([2, 0]), 2) == 1.0


def test_the_synthetic_corpus_spec_covers_the_generator_labels(tmp_path):
    write_labels(tmp_path, [])
    specs = {spec.name: spec for spec in load_spec(tmp_path / "zeroshot.yaml")}
    assert set(specs) == set(ATTRIBUTES)
    for name, values in ATTRIBUTES.items():
        assert list(specs[name].classes) == list(values)
    assert {label: words for label, words in specs["action"].classes.items()} == {a: (ACTION_WORDS[a],) for a in ACTIONS}
    assert [specs[name].slot for name in ("colour", "shape", "action")] == [1, 2, 4]


@pytest.mark.parametrize("text, message", [
    ("template: now the [MASK]\nattributes: {colour: {slot: 2, classes: {red: red, blue: blue}}}", "slot"),
    ("template: now the [MASK]\nattributes: {colour: {slot: 1, clases: {}}}", "did you mean 'classes'"),
    ("template: now the [MASK]\nattributes: {colour: {slot: 1, classes: {red: red}}}", "at least two"),
    ("template: now the word\nattributes: {colour: {slot: 1, classes: {red: red, blue: blue}}}", "MASK"),
    ("templat: x\nattributes: {}", "did you mean 'template'"),
])
def test_zero_shot_spec_errors_name_the_problem(tmp_path, text, message):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_spec(path)


# ------------------------------------------------------------------------ a model that learnt the corpus
@pytest.fixture(scope="module")
def learnt(tmp_path_factory):
    from tests.eval_data import make_learnable_corpus, train_tiny

    from videobert.distil import DistilConfig, run as distil

    folder = tmp_path_factory.mktemp("learnt")
    corpus = make_learnable_corpus(folder / "data", videos=96, seed=3)
    run = train_tiny(corpus, folder / "run")
    distil(run, corpus, DistilConfig(steps=150, batch_size=16, warmup=15, device="cpu", save_every=0))
    return {"run": run, "corpus": corpus, "labels": folder / "data" / "labels.jsonl"}


@pytest.fixture(scope="module")
def learnt_metrics(learnt):
    cfg = EvaluateConfig(split="test", two_stage=10, device="cpu")
    return evaluate(learnt["run"], learnt["corpus"], cfg, labels=learnt["labels"],
                    zero_shot_spec=learnt["labels"].parent / "zeroshot.yaml")


def test_zero_shot_beats_chance_and_the_text_only_prior(learnt_metrics):
    zero_shot = learnt_metrics["zero_shot"]
    assert set(zero_shot) == {"colour", "shape", "action"}
    for name in ("colour", "action"):  # what the visual words carry
        result = zero_shot[name]
        assert result["segments"] >= 40 and result["classes"] == 6
        assert result["top1"] > result["chance_top1"] + 0.2, (name, result)
        assert result["top1"] > result["prior_top1"] + 0.2, (name, result)
        assert result["top5"] >= result["prior_top5"]
    for result in zero_shot.values():
        assert result["chance_top1"] == 1 / result["classes"]


def test_retrieval_and_alignment_beat_chance(learnt_metrics):
    m = learnt_metrics
    n = m["gallery"]
    assert n >= 40
    for direction in ("t2v", "v2t"):
        result = m[direction]
        assert result["chance_r5"] == 5 / n and result["chance_median_rank"] == (n + 1) / 2
        assert result["r5"] > result["chance_r5"] + 0.15, (direction, result)
        assert result["median_rank"] < result["chance_median_rank"] / 2
    assert m["align_accuracy"] > 0.7 and m["align"]["chance"] == 0.5
    two_stage = m["two_stage"]
    assert two_stage["chance_first_stage_recall"] == 10 / n
    for direction in ("t2v", "v2t"):
        assert two_stage["first_stage_recall"][direction] > 10 / n + 0.2  # the first stage beats a random shortlist
        cost = two_stage["recall_cost"][direction]
        assert cost["r10"] == pytest.approx(m[direction]["r10"] - two_stage[direction]["r10"])
        dual = two_stage["dual"][direction]  # the distilled dual encoder alone, beside chance
        assert dual["r5"] > dual["chance_r5"] + 0.15 and dual["chance_r5"] == 5 / n
    assert two_stage["pairs_scored"] == 2 * 10 * n < n * n


def test_text_to_video_predicts_the_words_of_the_sentence(learnt):
    from videobert.inference import load_model

    loaded = load_model(learnt["run"], device="cpu")
    agree = 0
    for index, (colour, action) in enumerate(zip(COLOURS, ACTIONS)):
        words, confidence = text_to_video(loaded, f"now the {colour} circle moves {ACTION_WORDS[action]}", n_words=4)
        assert len(words) == 4 and all(0 <= w < loaded.vocab.visual_vocab_size for w in words)
        assert all(0 < p <= 1 for p in confidence)
        planted = {index, len(COLOURS) + index}  # tests/eval_data.py: colour word, action word
        agree += bool(planted & set(words))
    assert agree >= 4  # chance: a random word is one of the two planted ones 2/48 of the time
