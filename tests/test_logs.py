"""Logs people can read: a flood of one warning becomes a few lines and a count (nothing lost from
the count), different warnings are not merged, backtest lines carry simulated time."""

import logging

from mantra import logs


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def _logger(filt):
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage() + getattr(record, "repeat_note", ""))

    h = Keep()
    h.addFilter(filt)
    log = logging.getLogger("mantra.test.flood")
    log.handlers[:] = [h]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log, records


def test_a_flood_is_folded_into_a_count():
    clock = Clock()
    f = logs.Repeats(burst=3, window_s=10, clock=clock)
    log, out = _logger(f)
    for i in range(1000):
        log.warning("book %d stale", i % 7)
        log.warning("another thing")
    assert len(out) == 6 and out[0] == "book 0 stale" and "counted" in out[4] and "counted" in out[5]
    log.info("info is never folded")
    assert out[-1] == "info is never folded"
    clock.t = 11
    log.warning("book %d stale", 99)
    assert out[-1].startswith("book 99 stale [and 997 more like it")
    log.warning("book %d stale", 100)
    assert f.flush() == [("mantra.test.flood", "another thing", 997)]
    assert f.flush() == []  # reported once


def test_backtest_lines_carry_simulated_time():
    fmt = logs.Stamps("%(asctime)s %(message)s")
    rec = logging.LogRecord("x", logging.WARNING, __file__, 1, "hello", (), None)
    logs.use_clock(lambda: 1_700_000_000_123_000_000)
    try:
        assert fmt.format(rec) == "2023-11-14 22:13:20.123 sim hello"
    finally:
        logs.use_clock(None)
    assert " sim " not in fmt.format(rec)


def test_the_note_never_changes_the_record_other_handlers_see():
    f = logs.Repeats(burst=1, window_s=10, clock=Clock())
    rec = logging.LogRecord("x", logging.WARNING, __file__, 1, "refused: %s", ("FILTER",), None)
    assert f.filter(rec) and rec.getMessage() == "refused: FILTER"
    assert logs.Stamps("%(message)s").format(rec).endswith("FILTER [repeated: further ones are counted for 10 s]")

