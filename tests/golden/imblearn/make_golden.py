"""Golden outputs of imbalanced-learn 0.14.2 for gigo's `rebalance` stage tests.

Made with the pinned peers environment, from the repository root (/work/main):

    PY=$(../shared/bench/peers/setup.sh)
    $PY tests/golden/imblearn/make_golden.py ../shared/datasets/imbalanced tests/golden/imblearn

For every `*.parquet` in the data directory it writes `<dataset>.json` with the class
counts before and after each sampler, and, for the deterministic samplers (Tomek links,
ENN, NearMiss-1/2/3), the exact row indices they remove (Tomek, ENN) or keep (NearMiss).
Features are loaded as in ../shared/bench/peers/smote.py: every integer or floating
column except `label`, as float64, NaN -> 0 (the data sets have no missing values).
The randomised samplers (SMOTE & co.) only have their counts recorded; they are
reproducible in imbalanced-learn with `random_state=0` but use numpy's generator, which
gigo does not imitate.
"""
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import imblearn
from imblearn.combine import SMOTEENN, SMOTETomek
from imblearn.over_sampling import ADASYN, SMOTE, BorderlineSMOTE, RandomOverSampler
from imblearn.under_sampling import (
    EditedNearestNeighbours,
    NearMiss,
    RandomUnderSampler,
    TomekLinks,
)


def load(path):
    t = pq.read_table(path)
    feats = [
        c
        for c in t.column_names
        if c != "label"
        and (pa.types.is_integer(t.schema.field(c).type) or pa.types.is_floating(t.schema.field(c).type))
    ]
    X = np.nan_to_num(
        np.stack([t.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in feats], axis=1)
    )
    y = t.column("label").to_numpy()
    return feats, X, y


def counts(y):
    return {str(k): int(v) for k, v in sorted(Counter(y.tolist()).items())}


def main(src, dst):
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(src).glob("*.parquet")):
        feats, X, y = load(path)
        n = len(y)
        out = {
            "dataset": path.stem,
            "imbalanced_learn": imblearn.__version__,
            "features": feats,
            "rows": n,
            "counts": counts(y),
            "methods": {},
        }
        m = out["methods"]
        # Deterministic cleaning / under-sampling: exact rows.
        for name, sampler, keep in [
            ("tomek", TomekLinks(), False),
            ("enn", EditedNearestNeighbours(), False),
            ("near_miss_1", NearMiss(version=1), True),
            ("near_miss_2", NearMiss(version=2), True),
            ("near_miss_3", NearMiss(version=3), True),
        ]:
            _, yr = sampler.fit_resample(X, y)
            kept = np.sort(sampler.sample_indices_)
            entry = {"counts_after": counts(yr)}
            if keep:
                entry["kept"] = kept.tolist()
            else:
                entry["removed"] = np.setdiff1d(np.arange(n), kept).tolist()
            m[name] = entry
        # Randomised samplers: counts only.
        for name, sampler in [
            ("random_over", RandomOverSampler(random_state=0)),
            ("random_under", RandomUnderSampler(random_state=0)),
            ("smote", SMOTE(random_state=0)),
            ("borderline_smote_1", BorderlineSMOTE(kind="borderline-1", random_state=0)),
            ("borderline_smote_2", BorderlineSMOTE(kind="borderline-2", random_state=0)),
            ("adasyn", ADASYN(random_state=0)),
            ("smote_tomek", SMOTETomek(random_state=0)),
            ("smote_enn", SMOTEENN(random_state=0)),
        ]:
            try:
                _, yr = sampler.fit_resample(X, y)
                m[name] = {"counts_after": counts(yr)}
            except Exception as e:  # e.g. ADASYN on separable data
                m[name] = {"error": f"{type(e).__name__}: {e}"}
        (dst / f"{path.stem}.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")
        print(path.stem, {k: v.get("counts_after") for k, v in m.items()}, file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
