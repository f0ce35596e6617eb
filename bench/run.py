"""`make bench`: every benchmark section side by side in one run, each against its natural alternative.

    python bench/run.py [section ...]   sections: kernels, detection, spark, pipeline, ingest, alerts, gaps,
                                        backfill, scale, dashboard (default: all)

Results go to .bench/results.json (all numbers) and .bench/results.md (the table printed at the end); a run
of some sections replaces only those sections' rows.
Sections that need the local stack start it first (scripts/stack.py up). Numbers are measurements of this
machine on this run, never assertions: the test suite does not time anything.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts"), str(REPO / "bench")]

import stack  # noqa: E402

OUT = REPO / ".bench"
# section -> (module in bench/, needs the stack)
SECTIONS = {
    "kernels": ("kernels", False),
    "detection_real": ("detection_real", False),
    "detection": ("detection_eval", False),
    "spark": ("spark_metrics", True),
    "pipeline": ("pipeline_e2e", True),
    "ingest": ("ingest_replay", True),
    "alerts": ("alerts_latency", True),
    "gaps": ("gap_repair", True),
    "backfill": ("backfill", True),
    "scale": ("metrics_scale", True),
    "dashboard": ("dashboard_read", True),
}


def markdown(rows: list[dict]) -> str:
    lines = []
    for section in dict.fromkeys(r["section"] for r in rows):
        lines += [
            f"\n### {section}\n",
            "| benchmark | implementation | result | unit | notes |",
            "|---|---|---:|---|---|",
        ]
        for r in (r for r in rows if r["section"] == section):
            value = r.get("value")
            shown = (
                (f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}") if isinstance(value, float) else str(value)
            )
            lines.append(f"| {r['name']} | {r.get('impl', '')} | {shown} | {r['unit']} | {r.get('notes', '')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    wanted = argv or list(SECTIONS)
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        print(f"bench: unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}", file=sys.stderr)
        return 2
    settings = stack.settings()
    if any(SECTIONS[name][1] for name in wanted):
        if stack.main(["up"]) != 0:
            return 2
    rows: list[dict] = []
    for name in wanted:
        module_name, _ = SECTIONS[name]
        started = time.monotonic()
        print(f"bench: {name} ...", flush=True)
        module = importlib.import_module(module_name)
        section_rows = module.run(settings)
        for row in section_rows:
            row.setdefault("section", name)
        rows += section_rows
        print(f"bench: {name} done in {time.monotonic() - started:.0f}s", flush=True)
    OUT.mkdir(exist_ok=True)
    # Sections not run this time keep their last results, so `make bench SECTIONS=spark` refreshes one part.
    previous = OUT / "results.json"
    if previous.exists():
        kept = [r for r in json.loads(previous.read_text())["results"] if r["section"] not in wanted]
        rows = kept + rows
    meta = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.node()}, {__import__('os').cpu_count()} cores",
        "python": platform.python_version(),
    }
    (OUT / "results.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2, default=str))
    table = f"# SparkTrends benchmarks ({meta['when']}, {meta['machine']})\n" + markdown(rows)
    (OUT / "results.md").write_text(table)
    print(table)
    print(f"bench: wrote {OUT / 'results.json'} and {OUT / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
