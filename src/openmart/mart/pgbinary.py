"""PostgreSQL's binary COPY format, encoded from Arrow columns with numpy, never row by row.

Binary COPY spares both sides the cost of printing and parsing decimal floats (the bulk of a
CSV COPY's time for numeric payload). Supported column types: float64 (double precision),
string (text) and timestamp (timestamptz); anything else makes :func:`encodable` say no and the
caller uses CSV. When a chunk has no NULLs and fixed-width strings (generated scoring ids), every
row has the same size and rows are laid out by strided column copies; otherwise fields are
scattered through computed offsets.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
TRAILER = struct.pack("!h", -1)
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds
_ARANGE4 = np.arange(4)
_ARANGE8 = np.arange(8)


TEXT_LITERAL = b"openmart.text_literal"  # field metadata: a value in PostgreSQL's text syntax


def encodable(table: pa.Table) -> bool:
    return all(
        (pa.types.is_float64(f.type) or pa.types.is_string(f.type) or pa.types.is_timestamp(f.type))
        and not (f.metadata and TEXT_LITERAL in f.metadata)
        for f in table.schema
    )


def _fixed_bytes(arr: pa.Array) -> np.ndarray:
    """(n, 8) big-endian bytes of a float64 or timestamp column (NULLs as zeros)."""
    if pa.types.is_timestamp(arr.type):
        micros = pc.cast(pc.cast(arr, pa.timestamp("us", tz="UTC")), pa.int64())
        values = (
            micros.to_numpy(zero_copy_only=False).astype(np.int64, copy=False) - _PG_EPOCH_US
            if arr.null_count == 0
            else np.asarray(micros.fill_null(0)) - _PG_EPOCH_US
        )
        return values.astype(">i8").view(np.uint8).reshape(-1, 8)
    values = arr.fill_null(0.0).to_numpy() if arr.null_count else arr.to_numpy()
    return values.astype(">f8").view(np.uint8).reshape(-1, 8)


def _string_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets relative to the data buffer, data bytes) of a string column."""
    arr = arr.cast(pa.string()) if not pa.types.is_string(arr.type) else arr
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1].astype(np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    return offsets, data


def encode_chunk(table: pa.Table) -> bytes:
    n, ncols = table.num_rows, table.num_columns
    columns = [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in table.columns]
    valid = [np.ones(n, bool) if c.null_count == 0 else c.is_valid().to_numpy(zero_copy_only=False) for c in columns]
    lengths = np.empty((n, ncols), dtype=np.int64)  # data bytes per field (-1: NULL)
    strings: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for j, col in enumerate(columns):
        if pa.types.is_string(col.type):
            offsets, data = _string_parts(col)
            strings[j] = (offsets, data)
            lengths[:, j] = np.diff(offsets)
        else:
            lengths[:, j] = 8
        lengths[~valid[j], j] = -1
    sizes = 4 + np.maximum(lengths, 0)
    field_start = 2 + np.cumsum(sizes, axis=1) - sizes  # within the row
    count = np.array([ncols], dtype=">i2").view(np.uint8)

    if (lengths == lengths[0]).all():  # every row alike: lay them out as a 2-D block
        row = int(2 + sizes[0].sum())
        out = np.empty((n, row), dtype=np.uint8)
        out[:, 0:2] = count
        for j, col in enumerate(columns):
            s = int(field_start[0, j])
            out[:, s : s + 4] = np.array([lengths[0, j]], dtype=">i4").view(np.uint8)
            if lengths[0, j] <= 0:
                continue
            if j in strings:
                offsets, data = strings[j]
                out[:, s + 4 : s + 4 + int(lengths[0, j])] = data[offsets[0] : offsets[-1]].reshape(n, -1)
            else:
                out[:, s + 4 : s + 12] = _fixed_bytes(col)
        return out.tobytes()

    row_sizes = 2 + sizes.sum(axis=1)
    row_start = np.cumsum(row_sizes) - row_sizes
    out = np.empty(int(row_sizes.sum()), dtype=np.uint8)
    out[row_start] = count[0]
    out[row_start + 1] = count[1]
    for j, col in enumerate(columns):
        fs = row_start + field_start[:, j]
        out[fs[:, None] + _ARANGE4] = lengths[:, j].astype(">i4").view(np.uint8).reshape(n, 4)
        ok = valid[j]
        if j in strings:
            offsets, data = strings[j]
            lens = np.where(ok, np.diff(offsets), 0)
            if lens.sum():
                dest = np.repeat(fs + 4 - offsets[:-1], lens)
                src = (
                    np.concatenate(
                        [np.arange(a, a + k) for a, k in zip(offsets[:-1][lens > 0], lens[lens > 0], strict=True)]
                    )
                    if not (np.diff(offsets) == lens).all()
                    else np.arange(offsets[0], offsets[-1])
                )
                dest = dest + src
                out[dest] = data[src]
        else:
            out[fs[ok][:, None] + 4 + _ARANGE8] = _fixed_bytes(col)[ok]
    return out.tobytes()


def chunks(table: pa.Table, rows: int) -> Iterator[bytes]:
    yield HEADER
    for start in range(0, table.num_rows, rows):
        yield encode_chunk(table.slice(start, rows))
    yield TRAILER
