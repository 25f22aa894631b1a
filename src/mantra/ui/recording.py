"""A recorded session or a backtest's output as a ``View``: the segment files read chunk by chunk
(never a whole queue in memory at once), each chunk filed with numpy as a live batch would be.

Fills go first, so the PnL curve marks every move of the top with the cash and position of the
fills before it; the traffic series are each queue's records per second.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..instruments import InstrumentRegistry
from ..spine.messages import BY_NAME, Fill
from ..store import segments
from .view import View

log = logging.getLogger("mantra.ui")


class NotARecording(ValueError):
    pass


def open_recording(root: str | Path) -> tuple[View, dict]:
    """(view, info) of the recording at ``root``; info: system name, queues, records, damage."""
    root = Path(root)
    man_path, inst_path = root / "system.json", root / "instruments.json"
    queues = segments.queues(root)
    where = dict.fromkeys(queues, root)
    result = root / "result.json"
    if result.exists():  # a backtest's output: its market data stayed where the run read it
        data = Path(json.loads(result.read_text()).get("data") or root)
        for q in segments.queues(data) if data.exists() else ():
            where.setdefault(q, data)
        man_path = man_path if man_path.exists() else data / "system.json"
    queues = list(where)
    if not queues:
        raise NotARecording(f"{root}: no recorded queues (expected <queue>/*.seg, as `mantra run` with a persister"
                            " or `mantra backtest --out` write)")
    man = json.loads(man_path.read_text()) if man_path.exists() else {}
    reg = InstrumentRegistry.load(inst_path) if inst_path.exists() else InstrumentRegistry()
    actors = {a["id"]: name for name, a in man.get("actors", {}).items()}
    view = View(reg, actors)
    types = {q: BY_NAME.get(d.get("type")) for q, d in man.get("queues", {}).items()}  # else each file's own
    damage: list = []
    records = 0
    per_sec: dict[str, np.ndarray] = {}
    order = sorted(queues, key=lambda q: types.get(q) is not Fill)  # fills first (see above)
    for q in order:
        counts = []
        for path in segments.segments(where[q], q):
            if not path.stat().st_size:
                continue
            try:
                info = segments.scan(path)
            except segments.NotASegment as e:
                log.warning("ui: %s skipped: %s", path, e)
                continue
            if info.desc is None:
                continue
            mt = types.get(q) or BY_NAME.get(info.desc["type"])
            old = mt is not None and info.desc.get("type_hash") != mt.TYPE_HASH
            for recs in segments.read(path, info=info):
                if old:  # an older schema of the type: mapped to the current one
                    recs = segments.upgrade(recs, mt)
                view.ingest(q, recs, mt)
                records += len(recs)
                counts.append(recs["publish"].astype(np.int64) // 1_000_000_000)
            damage += info.damage
        if counts:
            sec = np.concatenate(counts)
            per_sec[q] = sec
    for q, sec in per_sec.items():  # messages per second, on whole seconds
        s, n = np.unique(sec, return_counts=True)
        view._series(f"rate/{q}", "line", [("rate", 0)]).append(s * 1_000_000_000, n.astype(np.float64))
    for d in damage:
        log.warning("ui: damaged data skipped: %s", d)
    return view, {"system": man.get("name", root.name), "queues": queues, "records": records,
                  "damage": len(damage)}
