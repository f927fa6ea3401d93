"""The provenance CLI finds a record by the table's titles as well as config names."""

import json

import pytest

from mirprobe.lookup import RecordNotFound, find_record
from mirprobe.provenance import main


def _record(results, task, task_label, representation, layer, row):
    path = results / "provenance" / task / representation / f"{layer}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "cell": {"task": task, "representation": representation, "layer": layer, "row": row},
        "config": {"resolved": {"datasets": {task: {"label": task_label}}}},
    }
    path.write_text(json.dumps(record))
    return path


@pytest.fixture
def results(tmp_path):
    _record(tmp_path, "synth_key", "SynthKey", "mfcc", "stats", "MFCC")
    _record(tmp_path, "synth_key", "SynthKey", "musicgen", "12", "MusicGen-small L12")
    _record(tmp_path, "synth_key", "SynthKey", "musicgen", "24", "MusicGen-small L24")
    return tmp_path


def test_table_titles_and_config_names_find_the_same_record(results):
    by_name = find_record(results, "synth_key", "mfcc")
    assert by_name == results / "provenance/synth_key/mfcc/stats.json"
    assert find_record(results, "SynthKey", "MFCC") == by_name
    assert find_record(results, "synthkey", "mfcc") == by_name
    row = find_record(results, "SynthKey", "MusicGen-small L24")
    assert row == results / "provenance/synth_key/musicgen/24.json"
    assert find_record(results, "synth_key", "musicgen", "12").stem == "12"


def test_a_miss_lists_the_choices(results, capsys):
    with pytest.raises(
        RecordNotFound, match=r"no task 'GTZAN'; choose among \['synth_key \(SynthKey\)'\]"
    ):
        find_record(results, "GTZAN", "mfcc")
    with pytest.raises(SystemExit):
        main(["SynthKey", "musicgen", "--results", str(results)])
    error = capsys.readouterr().err
    assert "more than one record of 'musicgen' on 'SynthKey'" in error
    assert "musicgen --layer 12 (MusicGen-small L12)" in error
    assert "musicgen --layer 24 (MusicGen-small L24)" in error


def test_the_help_says_what_each_digest_covers(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    for digest in ("data.metadata_sha256", "data.audio_sha256", "config.sha256"):
        assert digest in shown
