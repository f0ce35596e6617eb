"""Log rotation for .stack/logs (scripts/logfiles.py): a log past the limit is copied aside and truncated in
place while its writer keeps appending; at most `keep` copies stay; small logs are left alone."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import logfiles


def test_a_full_log_is_rotated_under_a_writer_that_keeps_appending(tmp_path):
    writer = (tmp_path / "kafka.log").open("ab", buffering=0)  # how every stack process holds its log
    (tmp_path / "small.log").write_bytes(b"x" * 10)
    for generation in range(7):
        writer.write(f"generation {generation}\n".encode().ljust(100, b"."))
        assert logfiles.rotate(tmp_path, max_bytes=100, keep=3) == [tmp_path / "kafka.log"]
        assert (tmp_path / "kafka.log").stat().st_size == 0
    writer.write(b"after the last rotation\n")
    writer.close()

    assert (tmp_path / "kafka.log").read_bytes() == b"after the last rotation\n"  # at the start, no hole before it
    copies = sorted(p.name for p in tmp_path.glob("kafka.log.*"))
    assert copies == ["kafka.log.1", "kafka.log.2", "kafka.log.3"]
    newest_first = [(tmp_path / name).read_bytes().split(b"\n")[0] for name in copies]
    assert newest_first == [b"generation 6", b"generation 5", b"generation 4"]
    assert (tmp_path / "small.log").read_bytes() == b"x" * 10
