#!/usr/bin/python3
"""Python side of bench/ml.sh: the same generated rows as tandem's warehouse query, the same
split (FNV-1a 64 of the key's text), the same XGBoost parameters and threads.

  ml_ref.py gen ROWS FEATURES OUT.npz   write the data (not timed: stands in for the Parquet
                                        export; Debian has no pyarrow)
  ml_ref.py train OUT.npz ROUNDS THREADS  load + DMatrix + train; prints JSON timings"""
import json
import sys
import time

import numpy as np

M = 1000003


def gen(rows, feats, out):
    i = np.arange(rows, dtype=np.int64)
    cols = [((i * (7919 * (j + 1) + 13) + 101 * j) % M) / M for j in range(feats)]
    noise = ((i * 104729 + 7) % M) / M
    z = 4 * cols[0] - 3 * cols[1] + 2 * cols[2] * cols[3] - 1.5
    label = (1 / (1 + np.exp(-z)) > noise).astype(np.float32)
    x = np.stack(cols, axis=1).astype(np.float32)

    def fnv(s):
        h = 14695981039346656037
        for b in s.encode():
            h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
        return h

    valid = np.array([fnv(str(k)) % 10000 < 2000 for k in range(rows)])
    np.savez(out, x=x, y=label, valid=valid)


def train(path, rounds, threads):
    import xgboost as xgb
    t0 = time.monotonic()
    c0 = time.process_time()
    d = np.load(path)
    x, y, v = d["x"], d["y"], d["valid"]
    t1 = time.monotonic()
    dt = xgb.DMatrix(x[~v], label=y[~v], nthread=threads)
    dv = xgb.DMatrix(x[v], label=y[v], nthread=threads)
    params = {"objective": "binary:logistic", "eval_metric": "logloss", "tree_method": "hist",
              "max_depth": 6, "eta": 0.1, "nthread": threads}
    bst = xgb.train(params, dt, num_boost_round=rounds, evals=[(dv, "valid")], verbose_eval=False)
    t2 = time.monotonic()
    print(json.dumps({"loadS": t1 - t0, "trainS": t2 - t1, "totalS": t2 - t0,
                      "cpuS": time.process_time() - c0,
                      "trees": bst.num_boosted_rounds()}))


if sys.argv[1] == "gen":
    gen(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
else:
    train(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
