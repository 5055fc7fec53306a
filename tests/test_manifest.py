import json

import pytest

from videobert.errors import InputError
from videobert.manifest import read_manifest, safe_id_from_stem, write_manifest


def write_lines(path, lines):
    path.write_text("\n".join(json.dumps(l) if not isinstance(l, str) else l for l in lines) + "\n")
    return path


def test_relative_paths_resolve_against_the_manifest_folder(tmp_path):
    manifest = write_lines(
        tmp_path / "m.jsonl",
        [
            {"video_id": "a", "video": "v/a.mp4", "transcript": "t/a.vtt", "split": "train"},
            {"video_id": "b", "video": "/abs/b.mp4"},
        ],
    )
    entries = read_manifest(manifest)
    assert entries[0].video == tmp_path / "v/a.mp4" and entries[0].transcript == tmp_path / "t/a.vtt"
    assert entries[0].split == "train"
    assert str(entries[1].video) == "/abs/b.mp4" and entries[1].transcript is None and entries[1].split is None


@pytest.mark.parametrize(
    "lines, message",
    [
        ([{"video_id": "a", "video": "a.mp4"}, {"video_id": "a", "video": "b.mp4"}], r"m\.jsonl:2: duplicate video_id 'a' \(first on line 1\)"),
        ([{"video_id": "../etc", "video": "a.mp4"}], r"m\.jsonl:1: video_id '\.\./etc' is not a safe file stem"),
        ([{"video_id": "-rf", "video": "a.mp4"}], "not a safe file stem"),
        ([{"video_id": "a b", "video": "a.mp4"}], "not a safe file stem"),
        ([{"video": "a.mp4"}], r"m\.jsonl:1: missing key 'video_id'"),
        ([{"video_id": "a"}], "missing key 'video'"),
        (["{not json"], r"m\.jsonl:1: invalid JSON"),
        ([{"video_id": "a", "video": "a.mp4", "split": "tset"}], "split 'tset' is not one of train, val, test"),
        ([{"video_id": "a", "video": "a.mp4", "vidoe": 1}], "unknown key 'vidoe'"),
        ([{"video_id": 3, "video": "a.mp4"}], "video_id must be a non-empty string"),
        (["[1, 2]"], "expected a JSON object"),
    ],
)
def test_manifest_errors_name_file_and_line(tmp_path, lines, message):
    manifest = write_lines(tmp_path / "m.jsonl", lines)
    with pytest.raises(InputError, match=message):
        read_manifest(manifest)


def test_missing_or_empty_manifest(tmp_path):
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="lists no videos"):
        read_manifest(tmp_path / "empty.jsonl")


def test_missing_video_file_is_left_to_the_stage(tmp_path):
    manifest = write_lines(tmp_path / "m.jsonl", [{"video_id": "a", "video": "gone.mp4"}])
    assert not read_manifest(manifest)[0].video.exists()


def test_folder_of_videos_with_odd_names_and_transcripts(tmp_path):
    for name in ("-lead dash.mp4", "café clip.mkv", "plain.mp4", "notes.txt", "plain.en.vtt"):
        (tmp_path / name).write_bytes(b"")
    entries = read_manifest(tmp_path)
    assert [e.video_id for e in entries] == ["_lead_dash", "caf_clip", "plain"]
    assert entries[2].transcript == tmp_path / "plain.en.vtt"
    assert entries[0].transcript is None


def test_folder_ids_that_collide_are_refused(tmp_path):
    (tmp_path / "a b.mp4").write_bytes(b"")
    (tmp_path / "a_b.mp4").write_bytes(b"")
    with pytest.raises(InputError, match="map to the same video_id 'a_b'"):
        read_manifest(tmp_path)


def test_folder_without_videos(tmp_path):
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(InputError, match="no video files in this folder"):
        read_manifest(tmp_path)


def test_write_then_read_round_trip(tmp_path):
    manifest = write_lines(tmp_path / "m.jsonl", [{"video_id": "a", "video": "v/a.mp4", "split": "test"}])
    entries = read_manifest(manifest)
    write_manifest(tmp_path / "copy.jsonl", entries)
    assert read_manifest(tmp_path / "copy.jsonl") == entries
    assert json.loads((tmp_path / "copy.jsonl").read_text())["video"] == "v/a.mp4"


def test_safe_id_from_stem():
    assert safe_id_from_stem(".hidden") == "_hidden"
    assert safe_id_from_stem("a/b:c") == "a_b_c"
