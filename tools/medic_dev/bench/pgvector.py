"""medic bench pgvector: HNSW build time, top-5 latency and recall on clustered 384-d vectors.

Usage: medic bench pgvector [--rows 100000] [--queries 200] [--clusters 1000] [--ef 40,100]

Vectors are clustered like failure embeddings (many failures per family): cluster centres
on the unit sphere, members at a fixed angular spread, all normalised. They are loaded with
COPY into a scratch database ``medic_bench`` on the embedded PostgreSQL (started if needed),
the HNSW index (vector_cosine_ops, pgvector defaults m=16, ef_construction=64) is built and
timed, then each query (a perturbed stored vector) runs through the index at each ef_search
and as an exact scan; recall@5 is the share of the exact top 5 that the index returned.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from pgvector.psycopg import register_vector

from medic_dev.stats import percentile

if TYPE_CHECKING:
    from medic_dev.stack import Stack


def clustered(
    rows: int, clusters: int, dim: int, spread: float, seed: int
) -> tuple[np.ndarray[Any, np.dtype[np.float32]], np.random.Generator]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    members = centres[rng.integers(0, clusters, size=rows)]
    vectors = members + rng.normal(scale=spread / np.sqrt(dim), size=(rows, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), rng


def main(argv: list[str], stack: Stack) -> int:
    parser = argparse.ArgumentParser(prog="medic bench pgvector")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--ef", default="40,100")
    parser.add_argument("--spread", type=float, default=0.6, help="angular spread of a cluster")
    args = parser.parse_args(argv)

    started_postgres = not stack.postgres_running()
    stack.start_postgres()
    with stack.connect_postgres("postgres", autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS medic_bench")
        admin.execute("CREATE DATABASE medic_bench")
    try:
        vectors, rng = clustered(args.rows, args.clusters, args.dim, args.spread, seed=7)
        with stack.connect_postgres("medic_bench", autocommit=True) as conn:
            # psycopg prepares a statement after 5 runs; a plan cached while the exact scan forbids
            # the index would then be reused for the HNSW queries. Plan every query afresh.
            conn.prepare_threshold = None
            conn.execute("CREATE EXTENSION vector")
            register_vector(conn)
            conn.execute(f"CREATE TABLE items (id int PRIMARY KEY, embedding vector({args.dim}))")
            t0 = time.perf_counter()
            with conn.cursor().copy("COPY items (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "vector"])
                for i, vector in enumerate(vectors):
                    copy.write_row((i, vector))
            load_s = time.perf_counter() - t0
            print(f"bench: loaded {args.rows} vectors in {load_s:.1f} s", flush=True)
            conn.execute("SET maintenance_work_mem = '1GB'")
            t0 = time.perf_counter()
            conn.execute("CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops)")
            build_s = time.perf_counter() - t0
            print(f"bench: HNSW index built in {build_s:.1f} s", flush=True)
            conn.execute("ANALYZE items")

            picks = rng.integers(0, args.rows, size=args.queries)
            queries = vectors[picks] + rng.normal(scale=0.2 / np.sqrt(args.dim), size=(args.queries, args.dim))
            queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
            sql = "SELECT id FROM items ORDER BY embedding <=> %s LIMIT 5"

            exact: list[set[int]] = []
            exact_ms: list[float] = []
            with conn.transaction():
                conn.execute("SET LOCAL enable_indexscan = off")
                for q in queries:
                    t0 = time.perf_counter()
                    exact.append({r[0] for r in conn.execute(sql, (q,)).fetchall()})
                    exact_ms.append((time.perf_counter() - t0) * 1000)
            results: dict[str, Any] = {}
            for ef in [int(e) for e in args.ef.split(",")]:
                latencies, hits = [], 0
                with conn.transaction():
                    conn.execute(f"SET LOCAL hnsw.ef_search = {ef}")
                    for q, truth in zip(queries, exact, strict=True):
                        t0 = time.perf_counter()
                        got = {r[0] for r in conn.execute(sql, (q,)).fetchall()}
                        latencies.append((time.perf_counter() - t0) * 1000)
                        hits += len(got & truth)
                results[f"ef_search_{ef}"] = {
                    "p50_ms": round(percentile(latencies, 0.5), 3),
                    "p99_ms": round(percentile(latencies, 0.99), 3),
                    "recall_at_5": round(hits / (5 * len(queries)), 4),
                }
                print(f"bench: ef_search {ef}: {results[f'ef_search_{ef}']}", flush=True)
    finally:
        with stack.connect_postgres("postgres", autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS medic_bench")
        if started_postgres:
            stack.stop_postgres()
    print(
        json.dumps(
            {
                "benchmark": "pgvector",
                "rows": args.rows,
                "dim": args.dim,
                "clusters": args.clusters,
                "queries": args.queries,
                "load_s": round(load_s, 2),
                "build_s": round(build_s, 2),
                "exact_p50_ms": round(percentile(exact_ms, 0.5), 2),
                **results,
                "machine": f"{os.cpu_count()} cores, {platform.machine()}",
            }
        )
    )
    return 0
