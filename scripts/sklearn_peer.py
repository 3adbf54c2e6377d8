#!/usr/bin/env python3
"""The scikit-learn peer of `tidig train`: the same training on the same store.

It reads what tidig's newest registered model was trained on -- the feature-set
version, the training and holdout snapshot dates and the log1p columns, all from the
model's artifact in the store -- loads those snapshots' vectors from SQLite, and does
what `tidig train --no-challenger` does: standardise on the training rows (log1p first
where tidig does, missing values to the mean), choose the L2 strength over the same grid
by 3-fold cross-validation with the same folds (person id mod 1,000,003 mod 3; scaler
fitted per fold), fit the final model on all training rows and evaluate the holdout.
`C = 1 / alpha` makes scikit-learn's objective tidig's (summed log loss plus
`alpha / 2 * |w|^2`, the intercept unpenalised).

It prints one JSON object: the seconds of each stage (loading the vectors included, as
tidig's figure includes its own loading), the chosen alpha, the holdout AUC, the final
objective and the coefficients on the standardised scale, to compare with
`tidig models show <id> --json` of the model tidig trained on the same store.

Usage (requirements in scripts/requirements.txt):

    python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements.txt
    tidig bench train --persons 100000 --store /tmp/bench.db   # or any trained store
    .venv/bin/python scripts/sklearn_peer.py /tmp/bench.db [--tol 1e-10]
"""

import argparse
import datetime as dt
import json
import sqlite3
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score

ALPHAS = [0.1, 1.0, 10.0, 100.0]
FOLDS = 3
EPOCH = dt.date(1970, 1, 1)


def days(text):
    return (dt.date.fromisoformat(text) - EPOCH).days


def load(con, version, as_of):
    ids, rows, labels = [], [], []
    for pid, vals, label in con.execute(
        "SELECT person_id, vals, label FROM feature_vectors "
        "WHERE feature_set = ? AND as_of = ? ORDER BY person_id",
        (version, days(as_of)),
    ):
        if label is None:
            raise SystemExit(f"the label of {as_of} is not observed")
        ids.append(pid)
        rows.append([np.nan if v is None else float(v) for v in json.loads(vals)])
        labels.append(label > 0.5)
    return np.array(ids), np.array(rows, dtype=float), np.array(labels)


class Scaler:
    """tidig's standardisation: log1p(max(x, 0)) on the marked columns, then centre and
    scale on the training rows; missing values become the mean (0 after scaling);
    constant columns are left unscaled."""

    def __init__(self, x, log1p):
        self.log1p = log1p
        x = self.pre(x)
        self.means = np.nanmean(x, axis=0)
        self.means = np.where(np.isnan(self.means), 0.0, self.means)
        centred = np.where(np.isnan(x), 0.0, x - self.means)
        count = np.sum(~np.isnan(x), axis=0)
        var = np.sum(centred**2, axis=0) / np.maximum(count, 1)
        sd = np.sqrt(var)
        self.scales = np.where(var > 1e-12, sd, 1.0)

    def pre(self, x):
        x = x.copy()
        x[:, self.log1p] = np.log1p(np.maximum(x[:, self.log1p], 0.0))
        return x

    def transform(self, x):
        z = (self.pre(x) - self.means) / self.scales
        return np.where(np.isnan(z), 0.0, z)


def fit(x, y, alpha, tol, max_iter, solver="lbfgs"):
    m = LogisticRegression(C=1.0 / alpha, solver=solver, tol=tol, max_iter=max_iter)
    m.fit(x, y)
    return m


def objective(m, x, y, alpha):
    z = x @ m.coef_[0] + m.intercept_[0]
    margin = np.where(y, -z, z)
    loss = np.sum(np.logaddexp(0.0, margin))
    return float(loss + 0.5 * alpha * np.dot(m.coef_[0], m.coef_[0]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("db", help="the SQLite store (tidig.db) with a trained model")
    ap.add_argument("--tol", type=float, default=1e-4, help="lbfgs tolerance (default 1e-4)")
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument(
        "--solver",
        default="lbfgs",
        help="scikit-learn solver; newton-cholesky with --tol 1e-12 gives a tight reference",
    )
    ap.add_argument(
        "--alpha",
        type=float,
        help="fit only the final model at this L2 strength (no cross-validation): "
        "the reference for tidig's final fit",
    )
    a = ap.parse_args()

    started = time.perf_counter()
    con = sqlite3.connect(a.db)
    (artifact,) = con.execute(
        "SELECT artifact FROM models ORDER BY created_at DESC LIMIT 1"
    ).fetchone()
    art = json.loads(artifact)
    version = art["feature_set_version"]
    log1p = np.array(art["model"]["scaler"]["log1p"], dtype=bool)
    train = [load(con, version, d) for d in art["train_snapshots"]]
    ids = np.concatenate([t[0] for t in train])
    x = np.vstack([t[1] for t in train])
    y = np.concatenate([t[2] for t in train])
    _, hx, hy = load(con, version, art["holdout_snapshot"])
    loaded = time.perf_counter()

    fold = ids % 1_000_003 % FOLDS
    results = []
    for alpha in [] if a.alpha else ALPHAS:
        losses = []
        for k in range(FOLDS):
            tr, te = fold != k, fold == k
            s = Scaler(x[tr], log1p)
            m = fit(s.transform(x[tr]), y[tr], alpha, a.tol, a.max_iter, a.solver)
            p = m.predict_proba(s.transform(x[te]))[:, 1]
            losses.append(log_loss(y[te], p, labels=[False, True]))
        results.append((float(np.mean(losses)), alpha))
    best = a.alpha or min(results)[1]
    cv_done = time.perf_counter()

    s = Scaler(x, log1p)
    xs = s.transform(x)
    m = fit(xs, y, best, a.tol, a.max_iter, a.solver)
    fitted = time.perf_counter()
    p = m.predict_proba(s.transform(hx))[:, 1]
    auc = roc_auc_score(hy, p)
    done = time.perf_counter()

    # tidig's model on the same standardised rows: its objective at the same strength and
    # how far its coefficients are from scikit-learn's.
    tm = art["model"]
    tw = np.array(tm["weights"])
    tz = xs @ tw + tm["intercept"]
    tidig_objective = float(
        np.sum(np.logaddexp(0.0, np.where(y, -tz, tz))) + 0.5 * tm["alpha"] * np.dot(tw, tw)
    )
    gap = float(
        max(np.max(np.abs(tw - m.coef_[0])), abs(tm["intercept"] - m.intercept_[0]))
    )

    print(
        json.dumps(
            {
                "rows": int(len(y)),
                "features": int(x.shape[1]),
                "holdout_rows": int(len(hy)),
                "load_seconds": loaded - started,
                "cv_seconds": cv_done - loaded,
                "final_fit_seconds": fitted - cv_done,
                "total_seconds": done - started,
                "train_seconds_without_load": done - loaded,
                "alpha": best,
                "cv": [{"alpha": al, "mean_log_loss": ll} for ll, al in results],
                "holdout_auc": auc,
                "objective": objective(m, xs, y, best),
                "intercept": float(m.intercept_[0]),
                "coefficients": [float(c) for c in m.coef_[0]],
                "iterations": int(m.n_iter_[0]),
                "tidig_alpha": tm["alpha"],
                "tidig_objective": tidig_objective,
                "objective_relative_difference": (tidig_objective - objective(m, xs, y, best))
                / objective(m, xs, y, best),
                "largest_coefficient_difference": gap,
            }
        )
    )


if __name__ == "__main__":
    main()
