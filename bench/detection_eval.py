"""Detection quality, measured: precision, recall and detection delay per anomaly kind on labelled series.

The series come from the ingest binary's seeded synthetic market (`sparktrends-ingest synthetic --bars-out`),
the same generator the local stack runs, which injects price jumps, volume spikes and volatility regime
shifts of known size and time and writes their labels. The detector is `sparktrends.compute_metrics` with the
configuration under evaluation (default: the package defaults).

    python bench/detection_eval.py [--symbols 40] [--days 10] [--seed 7] [--sweep]

A detection of kind K on symbol S matches a label of kind K on S when it fires within `MATCH_WINDOW` minutes
at or after the labelled bar; delay = minutes from the labelled bar to the first matching detection.
Precision counts each detection once (bars flagged with kind K that match no label are false positives).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import sparktrends

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import cargo_bin

REPO = Path(__file__).resolve().parent.parent
KINDS = ["price_jump", "volume_spike", "vol_regime_shift"]
# A regime shift shows once enough bars of the new regime fill the short window; a jump is reported by the bar that
# confirms it held (one minute after the move); a spike at once.
MATCH_WINDOW = {"price_jump": 2, "volume_spike": 1, "vol_regime_shift": 30}
MINUTE_MS = 60_000


def labelled_series(symbols: int, days: int, seed: int, workdir: Path) -> tuple[pa.Table, list[dict]]:
    bars_path, labels_path = workdir / "bars.parquet", workdir / "labels.jsonl"
    subprocess.run(
        [
            str(cargo_bin.build("sparktrends-ingest")),
            "synthetic",
            "--seed",
            str(seed),
            "--num-symbols",
            str(symbols),
            "--start",
            "2026-01-05T00:00:00Z",
            "--minutes",
            str(days * 1440),
            "--bars-out",
            str(bars_path),
            "--labels-out",
            str(labels_path),
        ],
        check=True,
        capture_output=True,
    )
    labels = [json.loads(line) for line in labels_path.read_text().splitlines() if line.strip()]
    return pq.read_table(bars_path), labels


def detections(bars: pa.Table, config: dict | None) -> dict[tuple[str, str], list[int]]:
    """(symbol, kind) -> bar times (ms) where the detector flagged that kind."""
    found: dict[tuple[str, str], list[int]] = defaultdict(list)
    ts_ms_type = pa.timestamp("ms", tz="UTC")
    for symbol in pc.unique(bars.column("symbol")).to_pylist():
        series = bars.filter(pc.equal(bars.column("symbol"), symbol)).sort_by("ts_ms")
        series = series.append_column("ts", pc.cast(series.column("ts_ms"), pa.int64()).cast(ts_ms_type))
        metrics = sparktrends.compute_metrics(series, config)
        kinds = metrics.column("anomaly_kinds").to_pylist()
        ts = pc.cast(metrics.column("ts"), pa.int64()).to_pylist()  # µs
        flagged_before: set[str] = set()
        for t, ks in zip(ts, kinds):
            flagged = set((ks or "").split(",")) - {""}
            for kind in flagged:
                # A regime shift is flagged on every bar while it lasts: count each episode once, at its start.
                if kind != "vol_regime_shift" or kind not in flagged_before:
                    found[(symbol, kind)].append(t // 1000)
            flagged_before = flagged
    return found


def label_window(label: dict) -> tuple[int, int]:
    """Bar times [start, end) during which a detection of the label's kind counts as finding it: the labelled
    bar for a jump or a spike, the whole labelled regime for a regime shift."""
    if label["kind"] == "vol_regime_shift":
        return label["ts_ms"], label["ts_ms"] + int(label.get("duration_minutes", 30)) * MINUTE_MS
    return label["ts_ms"], label["ts_ms"] + MATCH_WINDOW[label["kind"]] * MINUTE_MS


def score(found: dict[tuple[str, str], list[int]], labels: list[dict]) -> dict[str, dict]:
    """Per kind: recall (labels found), precision (detections that found a label of their kind),
    precision_any (detections inside any injected anomaly: a jump flagged at a regime's onset is a real
    anomaly, of another kind), delays, and for price jumps the recall on jumps of at least 6 sigma."""
    windows_by_symbol: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for lab in labels:
        windows_by_symbol[lab["symbol"]].append(label_window(lab))
    results = {}
    for kind in KINDS:
        kind_labels = [lab for lab in labels if lab["kind"] == kind]
        matched: set[tuple[str, int]] = set()
        delays, found_labels, big, big_found = [], 0, 0, 0
        for lab in kind_labels:
            start, end = label_window(lab)
            times = [t for t in found.get((lab["symbol"], kind), []) if start <= t < end]
            is_big = abs(lab.get("size_sigma") or 0) >= 6
            big += is_big
            if times:
                found_labels += 1
                big_found += is_big
                delays.append((min(times) - lab["ts_ms"]) / MINUTE_MS)
                matched.update((lab["symbol"], t) for t in times)
        detections = [(sym, t) for (sym, k), ts in found.items() if k == kind for t in ts]
        inside_any = sum(any(a <= t < b for a, b in windows_by_symbol[sym]) for sym, t in detections)
        results[kind] = {
            "labels": len(kind_labels),
            "detections": len(detections),
            "precision": len(matched) / len(detections) if detections else None,
            "precision_any": inside_any / len(detections) if detections else None,
            "recall": found_labels / len(kind_labels) if kind_labels else None,
            "recall_6sigma": big_found / big if big else None,
            "mean_delay_min": sum(delays) / len(delays) if delays else None,
            "max_delay_min": max(delays) if delays else None,
        }
    return results


def evaluate(symbols: int = 40, days: int = 10, seed: int = 7, configs: list[dict | None] | None = None) -> list[dict]:
    """Score each config (default: the package defaults) on one labelled data set."""
    with tempfile.TemporaryDirectory() as tmp:
        bars, labels = labelled_series(symbols, days, seed, Path(tmp))
    return [
        {
            "bars": bars.num_rows,
            "config": sparktrends.MetricsConfig(**(config or {})).to_dict(),
            "kinds": score(detections(bars, config), labels),
        }
        for config in configs or [None]
    ]


def run(_settings: object = None) -> list[dict]:
    """bench/run.py section: detection quality at the default thresholds."""
    result = evaluate()[0]
    rows = []
    for kind, r in result["kinds"].items():
        for metric in ("precision", "precision_any", "recall", "recall_6sigma", "mean_delay_min"):
            if r[metric] is None:
                continue
            rows.append(
                {
                    "section": "detection",
                    "name": f"{kind} {metric}",
                    "impl": "rust kernels, defaults",
                    "value": r[metric] if r[metric] is not None else float("nan"),
                    "unit": "minutes" if "delay" in metric else "ratio",
                    "notes": f"{r['labels']} labels, {r['detections']} detections, {result['bars']:,} bars",
                }
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=40)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--sweep", action="append", default=[], metavar="KEY=V1,V2,...", help="score each value of a config key"
    )
    args = parser.parse_args()
    configs: list[dict | None] = [None]
    for item in args.sweep:
        key, values = item.split("=", 1)
        configs = [{**(c or {}), key: float(v)} for c in configs for v in values.split(",")]
    columns = ("labels", "detections", "precision", "precision_any", "recall", "recall_6sigma", "mean_delay_min",
               "max_delay_min")  # fmt: skip
    print("| config | kind | " + " | ".join(columns) + " |")
    print("|---|---|" + "---:|" * len(columns))
    for result in evaluate(args.symbols, args.days, args.seed, configs):
        changed = {k: v for k, v in result["config"].items() if v != sparktrends.MetricsConfig().to_dict()[k]}
        for kind, r in result["kinds"].items():
            cells = [
                f"{r[k]:.3f}" if isinstance(r[k], float) else ("-" if r[k] is None else str(r[k])) for k in columns
            ]
            print(f"| {changed or 'defaults'} | {kind} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
