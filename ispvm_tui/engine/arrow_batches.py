"""Sample rows as Arrow tables shaped like their DuckDB table, for bulk inserts.

The Arrow schema comes from the table itself (``DESCRIBE``), never from the
values: inference would read a UBIGINT counter above 2**63 as an overflow and
a column that is all NULL in one batch as a type of its own. A table with a
column type this module does not map is left to the VALUES path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

_ARROW_TYPES = {
    "BOOLEAN": "bool_", "TINYINT": "int8", "SMALLINT": "int16", "INTEGER": "int32", "BIGINT": "int64",
    "UTINYINT": "uint8", "USMALLINT": "uint16", "UINTEGER": "uint32", "UBIGINT": "uint64",
    "FLOAT": "float32", "DOUBLE": "float64", "VARCHAR": "string",
}


class ArrowBatches:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._schemas: dict[str, Any] = {}  # table -> pyarrow.Schema, or None when a type is unmapped

    def _schema(self, table: str) -> Any:
        if table not in self._schemas:
            import pyarrow as pa  # the writer thread pays the import on its first flush, not start-up

            fields = []
            for name, column_type, *_ in self._con.execute(f"DESCRIBE {table}").fetchall():
                arrow_type = _ARROW_TYPES.get(column_type)
                if arrow_type is None:
                    fields = None
                    break
                fields.append(pa.field(name, getattr(pa, arrow_type)()))
            self._schemas[table] = pa.schema(fields) if fields is not None else None
        return self._schemas[table]

    def batch(self, table: str, rows: Sequence[tuple[Any, ...]]) -> Any:
        """The rows as a pyarrow Table, or None when this table is not one Arrow can carry.

        Raises pyarrow's ArrowInvalid / ArrowTypeError (or OverflowError) for a value that does not fit
        its column: the store then writes the batch row by row and drops only the bad rows.
        """
        schema = self._schema(table)
        if schema is None or not rows:
            return None
        import pyarrow as pa

        width = len(schema)
        if any(len(r) != width for r in rows):
            raise ValueError(f"{table}: a row does not have {width} values")
        columns = list(zip(*rows, strict=True))
        return pa.Table.from_arrays([pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)],
                                    schema=schema)
