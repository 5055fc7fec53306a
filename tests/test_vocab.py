"""Visual vocabulary: hierarchical k-means, tree descent, codebook files, the vocab and tokenize stages."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch

from pipelines import tokenize as tokenize_stage
from pipelines import vocab as vocab_stage
from tests.conftest import run_cli
from videobert.features import FEATURE_DIM
from videobert.store import read_failures
from videobert.vocab import (
    Codebook,
    Normalisation,
    VocabTree,
    descend,
    fit_normalisation,
    flat_comparison,
    hierarchical_kmeans,
    load,
    load_tokens,
    tokens_meta,
)

FAST = ["-q", "--niter", "10"]


# ---------------------------------------------------------------------------------------------
# helpers


def planted_hierarchy(rng, k: int, per_leaf: int, dim: int = FEATURE_DIM, scale: float = 1e-3):
    """Clips from k super-clusters of k sub-clusters each: (features float32 [n, dim], label [n])."""
    supers = rng.standard_normal((k, dim))
    subs = supers[:, None, :] + 0.4 * rng.standard_normal((k, k, dim))
    labels = np.repeat(np.arange(k * k), per_leaf)
    rng.shuffle(labels)
    features = subs.reshape(k * k, dim)[labels] + 0.1 * rng.standard_normal((len(labels), dim))
    return (features * scale).astype(np.float32), labels


def write_features(folder, videos: dict[str, np.ndarray], clip_seconds: float = 1.5, manifest=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for video_id, features in videos.items():
        np.save(folder / f"{video_id}.npy", features.astype(np.float16))
    info = {"fps": 20, "clip_frames": 30, "clip_seconds": clip_seconds, "size": 224, "model": "s3d", "weights": "random-init"}
    if manifest is not None:
        info["manifest"] = str(manifest)
    (folder / "extract.json").write_text(json.dumps(info))


def split_into_videos(features: np.ndarray, labels: np.ndarray, videos: int):
    """{video_id: features} and {video_id: labels} of consecutive runs of clips."""
    bounds = np.linspace(0, len(features), videos + 1).astype(int)
    ids = [f"v{i:03d}" for i in range(videos)]
    return (
        {vid: features[a:b] for vid, a, b in zip(ids, bounds[:-1], bounds[1:])},
        {vid: labels[a:b] for vid, a, b in zip(ids, bounds[:-1], bounds[1:])},
    )


def recovered(labels: np.ndarray, words: np.ndarray) -> bool:
    """Whether words and planted labels are the same partition (a one-to-one map)."""
    pairs = set(zip(labels.tolist(), words.tolist()))
    return len(pairs) == len(set(labels.tolist())) == len(set(words.tolist()))


def reference_descent(tree: VocabTree, z: np.ndarray) -> np.ndarray:
    """Slow, independent tree search: per clip, from the root, the nearest child (float64) until a leaf."""
    centroids = tree.centroids.astype(np.float64)
    leaves = np.empty(len(z), np.int64)
    for i, point in enumerate(z.astype(np.float64)):
        node = 0
        while tree.first_child[node] >= 0:
            children = np.arange(tree.first_child[node], tree.first_child[node] + tree.k)
            node = int(children[np.argmin(((centroids[children] - point) ** 2).sum(axis=1))])
        leaves[i] = node
    return leaves


def assert_same_or_near_tie(tree: VocabTree, z: np.ndarray, got: np.ndarray, want: np.ndarray) -> None:
    """Leaves must agree, except where float32 rounding decides between two (nearly) equidistant children."""
    for i in np.flatnonzero(got != want):
        a, b = tree.centroids[got[i]].astype(np.float64), tree.centroids[want[i]].astype(np.float64)
        da, db = ((z[i] - a) ** 2).sum(), ((z[i] - b) ** 2).sum()
        assert abs(da - db) <= 1e-4 * max(da, db), f"clip {i}: leaf {got[i]} at {da}, reference {want[i]} at {db}"
    assert (got != want).mean() <= 0.01


def random_tree(rng, k: int, depth: int, dim: int) -> VocabTree:
    """A tree with random centroids and random leaves at every level (about a third of nodes not split)."""
    first_child, level = [-1], [0]
    frontier = [0]
    for depth_now in range(1, depth + 1):
        new = []
        for node in frontier:
            if node != 0 and rng.random() < 0.35:
                continue
            first_child[node] = len(first_child)
            new += list(range(len(first_child), len(first_child) + k))
            first_child += [-1] * k
            level += [depth_now] * k
        frontier = new
    n = len(first_child)
    return VocabTree(k, rng.standard_normal((n, dim)).astype(np.float32), np.array(first_child, np.int32),
                     np.array(level, np.int32), np.ones(n, np.int64))


def identity_codebook(tree: VocabTree, depth: int) -> Codebook:
    dim = tree.centroids.shape[1]
    norm = Normalisation("none", False, np.zeros(dim, np.float32), np.ones(dim, np.float32), np.zeros(dim, np.float32),
                         np.zeros((0, dim), np.float32), np.zeros(0, np.float32))
    return Codebook(tree, norm, depth=depth, seed=0, device="cpu")


def tree_tensors(tree: VocabTree):
    centroids = torch.from_numpy(tree.centroids)
    return centroids, (centroids * centroids).sum(1), torch.from_numpy(tree.first_child.astype(np.int64))


# ---------------------------------------------------------------------------------------------
# tree descent


@pytest.mark.parametrize("gathered", [False, True], ids=["grouped", "gathered"])
def test_descent_equals_brute_force_tree_search_on_random_trees(gathered):
    rng = np.random.default_rng(0)
    tree = random_tree(rng, k=3, depth=4, dim=8)
    assert len(set(tree.node_level[tree.word_node].tolist())) >= 3  # words at several depths
    z = rng.standard_normal((3000, 8)).astype(np.float32)
    centroids, sqnorms, first_child = tree_tensors(tree)
    # a tiny gather block forces several chunks through the gathered path
    got = descend(torch.from_numpy(z), centroids, sqnorms, first_child, tree.k, gathered, gather_bytes=4096).numpy()
    want = reference_descent(tree, z)
    assert_same_or_near_tie(tree, z, got, want)
    assert set(got.tolist()) <= set(tree.word_node.tolist())


def test_built_tree_descent_equals_brute_force_and_the_build_assignment():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((4000, 16)).astype(np.float32)
    # min_points 60: 4000 clips split, ~1000-clip children split, ~250-clip grandchildren mostly not
    tree, build_leaves = hierarchical_kmeans(z, k=4, depth=3, niter=8, seed=3, min_points_per_centroid=60)
    assert 1 <= len(set(tree.node_level[tree.word_node].tolist()))
    codebook = identity_codebook(tree, depth=3)
    words = codebook.tokenize(z)
    want = reference_descent(tree, z)
    assert_same_or_near_tie(tree, z, tree.word_node[words].astype(np.int64), want)
    assert_same_or_near_tie(tree, z, build_leaves, want)


# ---------------------------------------------------------------------------------------------
# the tree: planted clusters, small and empty nodes, quantisation error, seeds


def test_hierarchy_recovers_planted_clusters():
    rng = np.random.default_rng(2)
    x, labels = planted_hierarchy(rng, k=4, per_leaf=60, dim=32, scale=1.0)
    tree, leaves = hierarchical_kmeans(x, k=4, depth=2, niter=10, seed=0)
    assert tree.size == 16
    assert recovered(labels, tree.node_word[leaves])


def test_small_and_empty_nodes_become_leaves_without_warnings(caplog, capfd):
    # 600 clips at two points: the root splits, each child holds 300 identical clips and splits
    # again (300 >= 4 x 5), where three of four grandchildren receive nothing.
    x = np.repeat(np.array([[0, 0], [10, 10]], np.float32), 300, axis=0)
    x = np.concatenate([x, np.array([[50, 50]] * 7, np.float32)])  # a tiny group beside them
    with caplog.at_level(logging.INFO, logger="videobert"):
        tree, leaves = hierarchical_kmeans(x, k=4, depth=3, niter=5, seed=0, min_points_per_centroid=5)
    threshold = 4 * 5
    split = tree.first_child >= 0
    assert (tree.node_points[split] >= threshold).all()
    assert (tree.node_points[tree.word_node] < threshold).any()  # tiny nodes were kept as words
    assert (tree.node_points[tree.word_node] == 0).any()  # empty children are words with no clips
    assert tree.node_points[tree.word_node].sum() == len(x)
    assert (tree.first_child[tree.node_points < threshold] == -1).all()
    # one summary line per level, nothing else; faiss (which prints to the C stderr) stays silent
    assert all(r.levelno < logging.WARNING for r in caplog.records)
    assert len([r for r in caplog.records if r.getMessage().startswith("level ")]) <= 3
    assert "WARNING" not in capfd.readouterr().err
    codebook = identity_codebook(tree, depth=3)
    assert (codebook.tokenize(x) == tree.node_word[leaves]).all()


def test_a_corpus_too_small_to_split_gives_one_word():
    x = np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32)
    tree, leaves = hierarchical_kmeans(x, k=4, depth=2, min_points_per_centroid=39)
    assert tree.size == 1 and (leaves == 0).all()
    assert np.allclose(tree.centroids[0], x.mean(0), atol=1e-6)


@pytest.mark.parametrize("k,depth,blobs", [(12, 2, 144), (4, 2, 16), (8, 2, 40)])
def test_quantisation_error_is_within_1_5x_of_flat_kmeans(k, depth, blobs):
    assert k**depth <= 144
    rng = np.random.default_rng(k)
    centres = 3 * rng.standard_normal((blobs, 16))
    n = 78 * k**depth
    z = (centres[rng.integers(blobs, size=n)] + 0.5 * rng.standard_normal((n, 16))).astype(np.float32)
    tree, leaves = hierarchical_kmeans(z, k=k, depth=depth, niter=10, seed=0)
    report = flat_comparison(z, tree.node_word[leaves], tree.centroids[tree.word_node], niter=10, seed=0, flat_sample=100_000, max_words=4096, gpu=False)
    assert report["centroids"] == tree.size and report["clips"] == n
    assert report["hierarchical_mse"] <= 1.5 * report["flat_mse"], report
    assert report["hierarchical_mse"] > 0 and report["flat_mse"] > 0


def test_flat_comparison_is_bounded():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((500, 4)).astype(np.float32)
    vectors = z[:50]
    words = rng.integers(50, size=500)
    assert "skipped" in flat_comparison(z, words, vectors, niter=20, seed=0, flat_sample=100_000, max_words=10, gpu=False)
    report = flat_comparison(z, words, vectors, niter=2, seed=0, flat_sample=200, max_words=4096, gpu=False)
    assert report["clips"] == 200


def test_same_seed_same_tree_whatever_the_threads_and_another_seed_another():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 8)).astype(np.float32)
    # max_points 100: nodes train on seeded subsets, which the seed must also fix
    args = dict(k=4, depth=2, niter=5, min_points_per_centroid=20, max_points_per_centroid=100)
    a, _ = hierarchical_kmeans(x, seed=1, **args)  # small nodes: concurrently, one thread each
    b, _ = hierarchical_kmeans(x, seed=1, workers=1, small_node_work=0, **args)  # one by one, all threads
    c, _ = hierarchical_kmeans(x, seed=2, **args)
    assert np.array_equal(a.centroids, b.centroids) and np.array_equal(a.first_child, b.first_child)
    assert not np.array_equal(a.centroids, c.centroids)


# ---------------------------------------------------------------------------------------------
# normalisation


def test_pca_whitening_gives_identity_covariance_and_its_dimension():
    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((32, 32)) * np.logspace(-3, 1, 32)
    sample = (rng.standard_normal((5000, 32)) @ mixing).astype(np.float32)
    norm = fit_normalisation(sample, "standardise", pca_dim=6)
    z = norm.apply(torch.from_numpy(sample)).numpy()
    assert z.shape == (5000, 6) and norm.dim == 6
    assert np.allclose(np.cov(z.T), np.eye(6), atol=1e-2)
    assert np.allclose(z.mean(0), 0, atol=1e-3)
    plain = fit_normalisation(sample, "standardise").apply(torch.from_numpy(sample)).numpy()
    assert np.allclose(plain.std(0), 1, atol=1e-3)
    l2 = fit_normalisation(sample, "l2").apply(torch.from_numpy(sample)).numpy()
    assert np.allclose(np.linalg.norm(l2, axis=1), 1, atol=1e-5)


def test_standardisation_lets_small_dimensions_decide(tmp_path):
    """A few loud dimensions of pure noise decide raw k-means; standardised, the planted structure wins."""
    rng = np.random.default_rng(3)
    x, labels = planted_hierarchy(rng, k=4, per_leaf=60)
    x[:, :8] = rng.standard_normal((len(x), 8))  # 1000x the scale of the others, no structure
    videos, _ = split_into_videos(x, labels, 8)
    write_features(tmp_path / "features", videos)
    codebooks = {}
    for method in ("standardise", "none"):
        out = tmp_path / method
        assert vocab_stage.main([str(tmp_path / "features"), "-o", str(out), "--k", "4", "--depth", "2",
                                 "--normalise", method, *FAST]) == 0
        codebooks[method] = load(out, device="cpu")
    words = {m: np.concatenate([c.tokenize(v) for v in videos.values()]) for m, c in codebooks.items()}
    order = np.concatenate([labels_ for labels_ in split_into_videos(x, labels, 8)[1].values()])
    assert recovered(order, words["standardise"])
    assert not recovered(order, words["none"])


def test_center_per_video_removes_what_is_constant_within_a_video(tmp_path):
    """Each video: a large random offset (its 'background') plus clips of 4 planted actions."""
    rng = np.random.default_rng(4)
    actions = rng.standard_normal((4, FEATURE_DIM))

    def video(action_counts: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(4), action_counts)
        rng.shuffle(labels)
        background = 3 * rng.standard_normal(FEATURE_DIM)
        clips = background + actions[labels] + 0.1 * rng.standard_normal((len(labels), FEATURE_DIM))
        return (clips * 1e-3).astype(np.float32), labels

    made = [video(25) for _ in range(12)]
    videos = {f"v{i:02d}": f for i, (f, _) in enumerate(made)}
    write_features(tmp_path / "features", videos)
    common = [str(tmp_path / "features"), "--k", "4", "--depth", "1", *FAST]
    assert vocab_stage.main([*common, "-o", str(tmp_path / "centred"), "--center-per-video"]) == 0
    assert vocab_stage.main([*common, "-o", str(tmp_path / "raw")]) == 0
    centred, raw = load(tmp_path / "centred", device="cpu"), load(tmp_path / "raw", device="cpu")
    # in the clustering space a video's mean is (about) zero: its background is gone
    assert np.abs(centred.normalise(made[0][0]).mean(0)).max() < 1e-3
    assert np.abs(raw.normalise(made[0][0]).mean(0)).max() > 0.5
    labels = np.concatenate([l for _, l in made])
    assert recovered(labels, np.concatenate([centred.tokenize(f) for f, _ in made]))
    assert not recovered(labels, np.concatenate([raw.tokenize(f) for f, _ in made]))
    # a new video with a background never seen: tokenize centres it by its own mean
    features, new_labels = video(10)
    assert recovered(np.concatenate([labels, new_labels]),
                     np.concatenate([centred.tokenize(f) for f, _ in made] + [centred.tokenize(features)]))


# ---------------------------------------------------------------------------------------------
# the vocab stage: codebook files, reproducibility, exemplars


@pytest.fixture(scope="module")
def planted_folder(tmp_path_factory):
    """Features of 16 planted clusters (4 x 4) in 10 videos, and a vocabulary built on them."""
    root = tmp_path_factory.mktemp("planted")
    rng = np.random.default_rng(7)
    x, labels = planted_hierarchy(rng, k=4, per_leaf=60)
    videos, video_labels = split_into_videos(x, labels, 10)
    write_features(root / "features", videos)
    assert vocab_stage.main([str(root / "features"), "-o", str(root / "vocab"), "--k", "4", "--depth", "2",
                             "--seed", "3", *FAST]) == 0
    return root, videos, video_labels


def test_vocab_recovers_planted_clusters_and_writes_its_summary(planted_folder):
    root, videos, video_labels = planted_folder
    codebook = load(root / "vocab")
    assert codebook.size == 16 and codebook.k == 4 and codebook.depth == 2
    words = np.concatenate([codebook.tokenize(v) for v in videos.values()])
    assert recovered(np.concatenate(list(video_labels.values())), words)
    summary = json.loads((root / "vocab" / "vocab.json").read_text())
    assert summary["vocab_size"] == 16 and summary["words_per_level"] == {"0": 0, "1": 0, "2": 16}
    assert sum(summary["leaf_size_histogram"].values()) == 16
    assert summary["codebook"] == codebook.hash and summary["sample"]["clips"] == 960
    flat = summary["quantisation"]["flat"]
    assert flat["centroids"] == 16 and flat["hierarchical_mse"] <= 1.5 * flat["flat_mse"]
    assert summary["exemplars"] == {"skipped": "no manifest"}
    vectors = codebook.word_vectors()
    assert vectors.shape == (16, FEATURE_DIM) and vectors.dtype == np.float32
    assert codebook.word_counts.sum() == 960


def test_fit_split_train_fits_on_the_train_videos_only(planted_folder, tmp_path, capsys):
    """The same codebook as a folder holding only the train videos, whatever the other videos hold."""
    root, videos, _ = planted_folder
    ids = sorted(videos)
    splits = {video_id: ("val" if i == 3 else "test" if i in (5, 8) else None) for i, video_id in enumerate(ids)}
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"video_id": v, "video": f"{v}.mp4", "split": s or "train"}) + "\n"
                                for v, s in splits.items()))
    rng = np.random.default_rng(0)
    everything = {v: f if splits[v] is None else f + rng.normal(0, 0.05, f.shape).astype(np.float32)  # held-out: far off
                  for v, f in videos.items()}
    write_features(tmp_path / "all", everything, manifest=manifest)
    write_features(tmp_path / "train_only", {v: f for v, f in videos.items() if splits[v] is None})
    common = ["--k", "4", "--depth", "2", "--seed", "3", "--normalise", "standardise", "--pca-dim", "8", *FAST]
    assert vocab_stage.main([str(tmp_path / "all"), "-o", str(tmp_path / "fit_train"), "--fit-split", "train",
                             *common]) == 0
    assert vocab_stage.main([str(tmp_path / "train_only"), "-o", str(tmp_path / "reference"), *common]) == 0
    assert vocab_stage.main([str(tmp_path / "all"), "-o", str(tmp_path / "fit_all"), *common]) == 0
    fitted, reference = load(tmp_path / "fit_train", device="cpu"), load(tmp_path / "reference", device="cpu")
    assert fitted.hash == reference.hash != load(tmp_path / "fit_all", device="cpu").hash
    sample = json.loads((tmp_path / "fit_train" / "vocab.json").read_text())["sample"]
    assert (sample["videos"], sample["corpus_videos"], sample["fit_split"]) == (7, 7, "train")
    # a video left to the corpus stage's split draw: that draw comes later, so fitting on train is refused
    undrawn = tmp_path / "undrawn.jsonl"
    undrawn.write_text("".join(json.dumps({"video_id": v, "video": f"{v}.mp4", **({"split": s} if s else {})}) + "\n"
                               for v, s in splits.items()))
    capsys.readouterr()
    assert vocab_stage.main([str(tmp_path / "all"), "-o", str(tmp_path / "undrawn"), "--fit-split", "train",
                             "--manifest", str(undrawn), *common]) != 0
    assert "gives 7 video(s) no split" in capsys.readouterr().err
    # without a manifest that says the splits, fit_split is a usage error
    write_features(tmp_path / "no_manifest", videos)
    assert vocab_stage.main([str(tmp_path / "no_manifest"), "-o", str(tmp_path / "x"), "--fit-split", "train",
                             *common]) == 2


def test_codebook_has_no_pickles_and_reloads_to_the_same_tokens(planted_folder, tmp_path):
    root, videos, _ = planted_folder
    with np.load(root / "vocab" / "codebook.npz", allow_pickle=False) as data:
        assert all(data[name].dtype != object for name in data.files)
    codebook = load(root / "vocab", device="cpu")
    codebook.save(tmp_path / "codebook.npz")
    again = load(tmp_path, device="cpu")
    assert again.hash == codebook.hash
    for features in videos.values():
        assert np.array_equal(again.tokenize(features), codebook.tokenize(features))
    assert np.array_equal(again.word_vectors(), codebook.word_vectors())


def test_same_seed_gives_the_same_codebook(planted_folder, tmp_path):
    root, _, _ = planted_folder
    args = [str(root / "features"), "--k", "4", "--depth", "2", "--max-points-per-centroid", "50", *FAST]
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert vocab_stage.main([*args, "-o", str(tmp_path / name), "--seed", seed]) == 0
    hashes = {name: load(tmp_path / name).hash for name in "abc"}
    assert hashes["a"] == hashes["b"] != hashes["c"]


def test_a_big_corpus_is_sampled_reproducibly(planted_folder, tmp_path):
    root, _, _ = planted_folder
    args = [str(root / "features"), "--k", "4", "--depth", "2", "--sample", "500", *FAST]
    assert vocab_stage.main([*args, "-o", str(tmp_path / "a")]) == 0
    assert vocab_stage.main([*args, "-o", str(tmp_path / "b")]) == 0
    summary = json.loads((tmp_path / "a" / "vocab.json").read_text())
    assert summary["sample"] == {"clips": 500, "videos": 10, "corpus_clips": 960, "corpus_videos": 10, "subsampled": True,
                                 "fit_split": "all"}
    assert load(tmp_path / "a").hash == load(tmp_path / "b").hash


def test_unreadable_features_are_recorded_and_the_rest_is_used(tmp_path):
    rng = np.random.default_rng(0)
    write_features(tmp_path / "features", {f"v{i}": rng.standard_normal((40, FEATURE_DIM)) for i in range(4)})
    (tmp_path / "features" / "broken.npy").write_bytes(b"not a numpy file")
    bad = rng.standard_normal((10, FEATURE_DIM))
    bad[3, 5] = np.nan
    np.save(tmp_path / "features" / "nan.npy", bad.astype(np.float16))
    assert vocab_stage.main([str(tmp_path / "features"), "-o", str(tmp_path / "vocab"), "--k", "2", "--depth", "1",
                             "--min-points-per-centroid", "5", *FAST]) == 0
    failed = {r["id"]: r["reason"] for r in read_failures(tmp_path / "vocab")}
    assert set(failed) == {"broken", "nan"} and "NaN" in failed["nan"]
    assert json.loads((tmp_path / "vocab" / "vocab.json").read_text())["sample"]["clips"] == 160
    # tokenize records the same two and tokenizes the others
    assert tokenize_stage.main([str(tmp_path / "features"), "--vocab", str(tmp_path / "vocab"),
                                "-o", str(tmp_path / "tokens"), "-q"]) == 0
    assert set(load_tokens(tmp_path / "tokens")) == {"v0", "v1", "v2", "v3"}
    assert {r["id"] for r in read_failures(tmp_path / "tokens")} == {"broken", "nan"}


def test_invalid_settings_are_usage_errors(tmp_path, capsys):
    features = tmp_path / "features"
    write_features(features, {"v": np.zeros((5, FEATURE_DIM))})
    assert vocab_stage.main([str(features), "-o", str(tmp_path / "v"), "--k", "1"]) == 2
    assert vocab_stage.main([str(features), "-o", str(tmp_path / "v"), "--min-points-per-centroid", "50",
                             "--max-points-per-centroid", "10"]) == 2
    assert vocab_stage.main([str(features), "-o", str(tmp_path / "v"), "--pca-dim", "64", "-q"]) == 2
    assert "pca_dim 64" in capsys.readouterr().err
    assert vocab_stage.main([str(tmp_path / "missing"), "-o", str(tmp_path / "v")]) == 1


# ---------------------------------------------------------------------------------------------
# end to end on the synthetic corpus: vocab (with exemplar frames) -> tokenize


def synthetic_features(synth_corpus, folder, seed: int = 0) -> dict[str, int]:
    """Random features for the synthetic corpus, one per 1.5 s clip, with an extract.json naming its manifest."""
    from videobert.manifest import read_manifest
    from videobert.media import probe

    rng = np.random.default_rng(seed)
    manifest = synth_corpus / "manifest.jsonl"
    clips = {e.video_id: int(probe(e.video).duration // 1.5) for e in read_manifest(manifest)}
    write_features(folder, {vid: rng.standard_normal((n, FEATURE_DIM)) for vid, n in clips.items()},
                   manifest=manifest.resolve())
    return clips


def test_vocab_and_tokenize_end_to_end_on_the_synthetic_corpus(synth_corpus, tmp_path, capsys):
    from PIL import Image

    features, vocab, tokens = tmp_path / "features", tmp_path / "vocab", tmp_path / "tokens"
    clips = synthetic_features(synth_corpus, features)
    result = run_cli("vocab", features, "-o", vocab, "--k", "4", "--depth", "2", "--min-points-per-centroid", "2",
                     "--pca-dim", "16", "--exemplar-size", "48", "--sheet-words", "6")
    assert result.returncode == 0, result.stderr
    assert "quantisation MSE" in result.stderr and "flat k-means" in result.stderr
    summary = json.loads((vocab / "vocab.json").read_text())
    codebook = load(vocab)
    assert codebook.dim == 16 and codebook.word_vectors().shape == (codebook.size, 16)
    some = np.load(features / f"{sorted(clips)[0]}.npy")
    assert codebook.normalise(some).shape == (len(some), 16)
    entries = json.loads((vocab / "exemplars.json").read_text())
    assert summary["exemplars"]["written"] == len(entries) == int((codebook.word_counts > 0).sum()) > 4
    for entry in entries:
        # the exemplar is a clip of that word, and its frame is the middle of the clip
        assert codebook.tokenize(np.load(features / f"{entry['video_id']}.npy"))[entry["clip"]] == entry["word"]
        assert entry["seconds"] == pytest.approx((entry["clip"] + 0.5) * 1.5)
        with Image.open(vocab / "exemplars" / f"{entry['word']}.jpg") as thumb:
            assert thumb.size == (48, 48)
            assert np.asarray(thumb).std() > 5  # a picture, not a blank
    with Image.open(vocab / "exemplars.jpg") as sheet:
        assert sheet.format == "JPEG" and sheet.size == (6 * 48, 48 + 14)

    result = run_cli("tokenize", features, "--vocab", vocab, "-o", tokens)
    assert result.returncode == 0, result.stderr
    words = load_tokens(tokens)
    assert {vid: len(t) for vid, t in words.items()} == clips
    for vid, t in words.items():
        assert t.dtype == np.int32 and np.array_equal(t, codebook.tokenize(np.load(features / f"{vid}.npy")))
    meta = tokens_meta(tokens)
    assert meta["vocab_size"] == codebook.size and meta["codebook"] == codebook.hash
    assert (meta["fps"], meta["clip_frames"], meta["clip_seconds"]) == (20, 30, 1.5)

    # the corpus stage reads this TOKENS folder: every example's visual words are its clips' tokens
    from pipelines import corpus as corpus_stage
    from videobert.corpus import load_corpus

    assert corpus_stage.main([str(synth_corpus / "manifest.jsonl"), "--tokens", str(tokens), "-o", str(tmp_path / "corpus"), "-q"]) == 0
    examples = [e for split in ("train", "val", "test") for e in load_corpus(tmp_path / "corpus", split)]
    assert examples and {e["video_id"] for e in examples} == set(clips)
    for e in examples:
        assert e["video_ids"] == words[e["video_id"]][e["first_clip"] : e["first_clip"] + len(e["video_ids"])].tolist()

    # rerunning either stage redoes nothing
    capsys.readouterr()
    assert vocab_stage.main([str(features), "-o", str(vocab), "--k", "4", "--depth", "2", "--min-points-per-centroid", "2",
                             "--pca-dim", "16", "--exemplar-size", "48", "--sheet-words", "6"]) == 0
    assert "kept" in capsys.readouterr().err
    assert load(vocab).hash == codebook.hash
    assert tokenize_stage.main([str(features), "--vocab", str(vocab), "-o", str(tokens)]) == 0
    assert f"{len(clips)} already done" in capsys.readouterr().err


def test_manifest_flag_finds_the_videos_and_missing_ones_are_recorded(synth_corpus, tmp_path):
    from videobert.manifest import read_manifest, write_manifest

    features = tmp_path / "features"
    synthetic_features(synth_corpus, features, seed=1)
    info = json.loads((features / "extract.json").read_text())
    del info["manifest"]
    (features / "extract.json").write_text(json.dumps(info))
    entries = read_manifest(synth_corpus / "manifest.jsonl")
    partial = tmp_path / "partial.jsonl"
    write_manifest(partial, entries[:3])
    args = [str(features), "--k", "2", "--depth", "2", "--min-points-per-centroid", "5", "--exemplar-size", "32", *FAST]
    assert vocab_stage.main([*args, "-o", str(tmp_path / "without")]) == 0
    assert json.loads((tmp_path / "without" / "vocab.json").read_text())["exemplars"] == {"skipped": "no manifest"}
    assert vocab_stage.main([*args, "-o", str(tmp_path / "vocab"), "--manifest", str(partial)]) == 0
    exemplars = json.loads((tmp_path / "vocab" / "exemplars.json").read_text())
    known = {e.video_id for e in entries[:3]}
    missing = {f"exemplar-{e['word']}" for e in exemplars if e["video_id"] not in known}
    assert missing  # seed 1 puts some exemplars in the other three videos
    assert {r["id"] for r in read_failures(tmp_path / "vocab")} == missing
    on_disk = {int(p.stem) for p in (tmp_path / "vocab" / "exemplars").glob("*.jpg")}
    assert on_disk == {e["word"] for e in exemplars if e["video_id"] in known}


def test_tokenize_resumes_shards_and_refuses_another_vocabulary(planted_folder, tmp_path):
    root, videos, _ = planted_folder
    features, vocab, tokens = root / "features", root / "vocab", tmp_path / "tokens"
    ids = sorted(videos)
    for shard in ("0/3", "2/3"):
        assert tokenize_stage.main([str(features), "--vocab", str(vocab), "-o", str(tokens), "--shard", shard, "-q"]) == 0
    partial = set(load_tokens(tokens))
    assert partial == set(ids[0::3]) | set(ids[2::3])
    assert (tokens / "failures.shard-00000-of-00003.jsonl").exists()
    broken = ids[0]
    (tokens / f"{broken}.npy").write_bytes(b"truncated")  # as if a writer had been killed mid-file
    written = {v: (tokens / f"{v}.npy").stat().st_mtime_ns for v in partial - {broken}}
    assert tokenize_stage.main([str(features), "--vocab", str(vocab), "-o", str(tokens), "-q"]) == 0
    assert {v: (tokens / f"{v}.npy").stat().st_mtime_ns for v in written} == written  # skipped, not redone
    codebook = load(vocab)
    tokens_now = load_tokens(tokens)
    assert set(tokens_now) == set(videos)
    assert all(np.array_equal(tokens_now[v], codebook.tokenize(f)) for v, f in videos.items())

    other = tmp_path / "other_vocab"
    assert vocab_stage.main([str(features), "-o", str(other), "--k", "3", "--depth", "1", *FAST]) == 0
    assert tokenize_stage.main([str(features), "--vocab", str(other), "-o", str(tokens), "-q"]) == 2
    assert tokenize_stage.main([str(features), "--vocab", str(other), "-o", str(tokens), "--overwrite", "-q"]) == 0
    assert all(t.max() < 3 for t in load_tokens(tokens).values())
    assert tokens_meta(tokens)["codebook"] == load(other).hash


# ---------------------------------------------------------------------------------------------
# GPU


@pytest.mark.gpu
def test_cuda_descent_gives_the_cpu_words(planted_folder):
    root, videos, _ = planted_folder
    cpu, cuda = load(root / "vocab", device="cpu"), load(root / "vocab", device="cuda")
    many = list(videos.values())
    assert all(np.array_equal(a, b) for a, b in zip(cpu.tokenize_many(many), cuda.tokenize_many(many)))


@pytest.mark.gpu
def test_faiss_gpu_build_recovers_planted_clusters():
    from videobert.vocab import faiss_gpu_wanted

    if not faiss_gpu_wanted("auto"):
        pytest.skip("faiss has no GPU support here")
    rng = np.random.default_rng(2)
    x, labels = planted_hierarchy(rng, k=4, per_leaf=60, dim=32, scale=1.0)
    tree, leaves = hierarchical_kmeans(x, k=4, depth=2, niter=10, seed=0, gpu=True, small_node_work=0)
    assert recovered(labels, tree.node_word[leaves])
    assert math.isfinite(float(tree.centroids.sum()))


def test_the_sample_is_uniform_reproducible_and_read_row_by_row(tmp_path):
    from videobert.vocab.sample import read_sample, sample_positions

    picked = sample_positions(10_000_000, 1000, seed=3)
    assert picked.size == 1000 and np.all(np.diff(picked) > 0) and picked.max() < 10_000_000
    assert np.array_equal(picked, sample_positions(10_000_000, 1000, seed=3))
    assert np.array_equal(sample_positions(50, 100, seed=0), np.arange(50))
    hits = np.bincount(np.concatenate([sample_positions(20, 5, seed=s) for s in range(4000)]), minlength=20)
    assert abs(hits / 1000 - 1).max() < 0.15  # each of 20 positions in 5/20 of 4000 samples

    features = tmp_path / "features"
    features.mkdir()
    rng = np.random.default_rng(0)
    for v in range(3):
        np.save(features / f"v{v}.npy", rng.standard_normal((40, 1024)).astype(np.float16))
    listing = [(f"v{v}", 40) for v in range(3)]
    sample, failed = read_sample(features, listing, 30, seed=1, center_per_video=False)
    bad = np.load(features / "v1.npy")
    unread = np.setdiff1d(np.arange(40), sample.clip[sample.video == 1])[0]
    bad[unread] = np.nan  # a row the sample does not read
    np.save(features / "v1.npy", bad)
    again, failed = read_sample(features, listing, 30, seed=1, center_per_video=False)
    assert not failed and np.array_equal(again.features, sample.features)
    _, failed = read_sample(features, listing, 30, seed=1, center_per_video=True)  # centring reads videos whole
    assert [video_id for video_id, _ in failed] == ["v1"] and failed[0][1].kind == "non_finite"
