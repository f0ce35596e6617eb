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
    (window 30, min_periods 10, lam 0.94, max_gap_minutes 15, regime_window 30, regime_trim 2,
    scale_floor_window 480, scale_floor_share 0.5, volume_scale_floor 0.3, episode_minutes 30,
    no session, session_edge_minutes 2, mute_outside_session True; thresholds: price_z 5.5/11,
    volume_z 6.5/13, vol_ratio 4.5/9). `session` is "<IANA zone> HH:MM-HH:MM[,HH:MM-HH:MM]".
    Invalid values raise ValueError."""

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
        scale_floor_window: Optional[int] = None,
        scale_floor_share: Optional[float] = None,
        volume_scale_floor: Optional[float] = None,
        regime_trim: Optional[int] = None,
        episode_minutes: Optional[float] = None,
        session: Optional[str] = None,
        session_edge_minutes: Optional[int] = None,
        mute_outside_session: Optional[bool] = None,
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
    @property
    def scale_floor_window(self) -> int: ...
    @property
    def scale_floor_share(self) -> float: ...
    @property
    def volume_scale_floor(self) -> float: ...
    @property
    def regime_trim(self) -> int: ...
    @property
    def episode_minutes(self) -> float: ...
    @property
    def session(self) -> Optional[str]: ...
    @property
    def session_edge_minutes(self) -> int: ...
    @property
    def mute_outside_session(self) -> bool: ...
    @property
    def warmup_bars(self) -> int: ...
    def to_dict(self) -> dict[str, Any]: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __getnewargs_ex__(self) -> tuple[tuple[()], dict[str, Any]]: ...

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
