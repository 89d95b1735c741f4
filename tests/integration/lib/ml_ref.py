#!/usr/bin/python3
"""Reference for tests/integration/ml.test.mjs: Debian's python3-xgboost 1.7.4 and sklearn.

Reads one JSON document on stdin:
  {"rows": [[key, f1, ..., fk, label], ...], "features": [...], "params": {...},
   "numRounds": N, "earlyStoppingRounds": E, "validFraction": f,
   "modelFile": path, "predictRows": [[f1..fk], ...], "tandemPreds": [p for each row]}
and prints {"auc", "bestIteration", "nTrain", "nValid", "filePreds", "sklearnAuc"}:
the validation AUC of a model Python trains itself on the same split (FNV-1a 64 of the key's
text, docs/ml.md), and the predictions of tandem's model file loaded into Python."""
import json
import sys

import numpy as np
import xgboost as xgb
from sklearn.metrics import roc_auc_score


def fnv1a64(s):
    h = 14695981039346656037
    for b in s.encode():
        h ^= b
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    req = json.load(sys.stdin)
    rows = req["rows"]
    frac = req["validFraction"]
    tr, va, valid_idx = [], [], []
    for i, r in enumerate(rows):
        if fnv1a64(str(r[0])) % 10000 < frac * 10000:
            va.append(r)
            valid_idx.append(i)
        else:
            tr.append(r)
    nan = float("nan")

    def mat(rs):
        x = np.array([[nan if v is None else v for v in r[1:-1]] for r in rs], dtype=np.float32)
        y = np.array([r[-1] for r in rs], dtype=np.float32)
        return x, y

    xt, yt = mat(tr)
    xv, yv = mat(va)
    dt = xgb.DMatrix(xt, label=yt, missing=nan)
    dv = xgb.DMatrix(xv, label=yv, missing=nan)
    params = dict(req["params"])
    bst = xgb.train(params, dt, num_boost_round=req["numRounds"], evals=[(dv, "valid")],
                    early_stopping_rounds=req["earlyStoppingRounds"], verbose_eval=False)
    pv = bst.predict(dv, iteration_range=(0, bst.best_iteration + 1))
    out = {
        "auc": float(roc_auc_score(yv, pv)),
        "bestIteration": int(bst.best_iteration),
        "nTrain": len(tr),
        "nValid": len(va),
    }
    # tandem's own model file, loaded into Python, on the rows tandem scored
    model = xgb.Booster()
    model.load_model(req["modelFile"])
    xp = np.array([[nan if v is None else v for v in r] for r in req["predictRows"]],
                  dtype=np.float32)
    out["filePreds"] = [float(p) for p in model.predict(xgb.DMatrix(xp, missing=nan))]
    # sklearn's AUC of tandem's predictions of the validation rows (checks tandem's AUC code)
    tp = req["tandemPreds"]
    out["sklearnAuc"] = float(roc_auc_score(yv, np.array([tp[i] for i in valid_idx])))
    json.dump(out, sys.stdout)


main()
