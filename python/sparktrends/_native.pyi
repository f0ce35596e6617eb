"""Type stubs of the Rust extension module; the documented API is the ``sparktrends`` package."""

from typing import Any, Optional, Union, final

import pyarrow as pa
from typing_extensions import Self

__all__ = [
    "CarryState",
    "MetricsConfig",
    "MetricsStream",
    "__version__",
    "admission_schema",
    "admit",
    "compute_metrics",
    "contract_files",
    "metrics_schema",
]
__version__: str

@final
class MetricsConfig:
    """Parameters of every metric and anomaly rule. Omitted keywords take the Rust core's defaults
    (window 30, min_periods 10, lam 0.94, max_gap_minutes 15, regime_window 10; thresholds:
    price_z 5.25/10, volume_z 4/6, vol_ratio 3/4.5). Invalid values raise ValueError."""

    def __new__(
        cls,
        *,
        window: Optional[int] = None,
        min_periods: Optional[int] = None,
        lam: Optional[float] = None,
        max_gap_minutes: Optional[float] = None,
        regime_window: Optional[int] = None,
        price_z_warning: Optional[float] = None,
        price_z_critical: Optional[float] = None,
        volume_z_warning: Optional[float] = None,
        volume_z_critical: Optional[float] = None,
        vol_ratio_warning: Optional[float] = None,
        vol_ratio_critical: Optional[float] = None,
    ) -> Self: ...
    @property
    def window(self) -> int: ...
    @property
    def min_periods(self) -> int: ...
    @property
    def lam(self) -> float: ...
    @property
    def max_gap_minutes(self) -> float: ...
    @property
    def regime_window(self) -> int: ...
    @property
    def price_z_warning(self) -> float: ...
    @property
    def price_z_critical(self) -> float: ...
    @property
    def volume_z_warning(self) -> float: ...
    @property
    def volume_z_critical(self) -> float: ...
    @property
    def vol_ratio_warning(self) -> float: ...
    @property
    def vol_ratio_critical(self) -> float: ...
    def to_dict(self) -> dict[str, Any]: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]: ...

@final
class CarryState:
    """Opaque state continuing one symbol's series in a later call."""

    @property
    def last_ts_us(self) -> Optional[int]: ...
    @property
    def segment_len(self) -> int: ...
    @property
    def tail_len(self) -> int: ...

@final
class MetricsStream:
    """Per-symbol carried state across the batches of one Spark partition."""

    def __new__(cls, config: Optional[MetricsConfig] = None) -> Self: ...
    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch: ...
    def carry(self, symbol: str) -> Optional[CarryState]: ...
    def symbols(self) -> list[str]: ...

def compute_metrics(
    bars: Union[pa.RecordBatch, pa.Table],
    config: Optional[MetricsConfig] = None,
    carry: Optional[CarryState] = None,
) -> tuple[pa.RecordBatch, CarryState]: ...
def metrics_schema(with_symbol: bool = True) -> pa.Schema: ...
def admit(kind: str, batch: pa.RecordBatch) -> pa.RecordBatch: ...
def admission_schema(kind: str, schema: pa.Schema) -> pa.Schema: ...
def contract_files() -> dict[str, str]: ...
