"""Reads a Pulse archive as its users would, with readers independent of Pulse.

pyarrow reads the folder as a Hive-partitioned dataset (channel, date and hour from the
folder names); DuckDB reads the same files with its own Parquet reader. Prints one JSON
object: every row pyarrow read, and DuckDB's count of rows and of distinct ids per channel.

Usage: python archive_read.py ARCHIVE_DIR
"""

import json
import sys

import duckdb
import pyarrow.dataset as ds


def main() -> int:
    root = sys.argv[1]
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    rows = [
        {
            "id": row["id"],
            "channel": row["channel"],
            "date": str(row["date"]),
            "hour": int(row["hour"]),
            "text": row["text"],
            "created_at": row["created_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "sentiment_label": row["sentiment_label"],
            "joy": dict(row["emotions"]).get("joy"),
            "entities": [e["text"] for e in row["entities"]],
            "kafka_partition": row["kafka_partition"],
            "kafka_offset": row["kafka_offset"],
        }
        for row in table.to_pylist()
    ]
    counts = duckdb.sql(
        "SELECT channel, count(*) AS posts, count(DISTINCT id) AS ids "
        f"FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true) "
        "GROUP BY channel ORDER BY channel"
    ).fetchall()
    json.dump(
        {
            "rows": rows,
            "duckdb": [{"channel": c, "posts": p, "ids": i} for c, p, i in counts],
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
