"""`mantra top`: columns stay apart whatever the magnitude (ns to seconds), each in its own unit."""

import re

from hypothesis import given
from hypothesis import strategies as st

from mantra.telemetry.top import duration, render

US = st.floats(min_value=0.0, max_value=1e8, allow_nan=False)


@given(US)
def test_a_duration_fits_its_column_and_reads_back(us):
    text = duration(us)
    assert len(text) <= 7
    value, unit = re.fullmatch(r"([\d.]+)(ns|µs|ms|s)", text).groups()
    back = float(value) * {"ns": 1e-3, "µs": 1, "ms": 1e3, "s": 1e6}[unit]
    assert abs(back - us) <= max(0.01 * us, 0.0006)


@given(st.lists(US, min_size=7, max_size=7), st.text("abcdefghij._", min_size=1, max_size=40))
def test_columns_never_collide(vals, name):
    timer = {"rate": 123456.0, "processing_us": dict(zip(("p50", "p99", "p999", "max", "count"), vals[:4] + [10**9])),
             "latency_us": dict(zip(("p50", "p99", "p999"), vals[4:]))}
    text = render("s", {"timers": {name: timer, "x.y": timer}})
    head, rule, *rows = text.splitlines()[1:]
    for row in rows:
        cells = row.split()
        assert cells[0] in (name, "x.y") or name.startswith(cells[0])
        assert len(row) == len(head)
        durations = [c for c in cells if re.fullmatch(r"[\d.]+(ns|µs|ms|s)", c)]
        assert len(durations) == 7, row  # seven separate cells: none ran into its neighbour
