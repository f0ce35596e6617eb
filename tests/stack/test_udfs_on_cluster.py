"""The Rust Arrow UDFs on the real standalone cluster (executors import the installed wheel) match the
independent pandas reference, through both Spark entry points."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import REPO
from tests.kernels.helpers import FLOAT_COLUMNS, bars_frame
from tests.kernels.reference import reference_metrics


def symbol_bars(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n) + (rng.random(n) < 0.02) * 0.01))
    steps = np.where(rng.random(n) < 0.01, 40, 1)  # a few gaps longer than max_gap: new segments
    return bars_frame(closes, rng.lognormal(3, 0.5, n), steps)


def test_apply_and_map_in_arrow_on_the_cluster_match_the_reference(submit, tmp_path):
    frames = {f"SYM{i}": symbol_bars(i, 300 + 25 * i) for i in range(5)}
    table = pa.concat_tables(
        [
            pa.table({"symbol": [sym] * len(f), "ts": pa.array(f["ts"], pa.timestamp("us", tz="UTC")),
                      **{c: pa.array(f[c], pa.float64()) for c in ("open", "high", "low", "close", "volume")}})
            for sym, f in frames.items()
        ]
    )  # fmt: skip
    pq.write_table(table, tmp_path / "bars.parquet")
    submit(str(REPO / "tests" / "stack" / "drivers" / "udf_entry_points.py"), str(tmp_path / "bars.parquet"),
           str(tmp_path / "out"))  # fmt: skip

    for variant in ("apply", "map"):
        result = pq.read_table(tmp_path / "out" / variant).to_pandas()
        assert sorted(result["symbol"].unique()) == sorted(frames)
        for sym, frame in frames.items():
            got = result[result["symbol"] == sym].sort_values("ts").reset_index(drop=True)
            want = reference_metrics(frame).reset_index(drop=True)
            assert len(got) == len(want), (variant, sym)
            for column in FLOAT_COLUMNS:
                np.testing.assert_allclose(
                    got[column].to_numpy(float), want[column].to_numpy(float), rtol=1e-9, atol=1e-12,
                    equal_nan=True, err_msg=f"{variant} {sym} {column}",
                )  # fmt: skip
            assert got["is_anomaly"].tolist() == want["is_anomaly"].tolist(), (variant, sym)
