import hashlib
import io

from annotate import import_files


def test_seen_ids_name_the_first_place():
    seen = import_files.SeenIds()
    assert (seen.earlier("a", "line 1"), seen.earlier("b", "line 2"), seen.earlier("a", "line 3")) == (
        None,
        None,
        "line 1",
    )


def test_seen_ids_keep_finding_duplicates_once_moved_to_disk(monkeypatch):
    monkeypatch.setattr(import_files, "_IDS_IN_MEMORY", 2)
    seen = import_files.SeenIds()
    for number in range(1, 6):
        assert seen.earlier(f"id{number}", f"line {number}") is None
    assert (seen.earlier("id1", "line 6"), seen.earlier("id5", "line 7")) == ("line 1", "line 5")
    seen.close()


def test_file_digest_hashes_the_bytes_and_rewinds():
    stream = io.BytesIO(b"abc\n" * 1000)
    assert import_files.file_digest(stream) == hashlib.sha256(b"abc\n" * 1000).hexdigest()
    assert stream.tell() == 0
