#!/usr/bin/python3
"""scikit-learn side of tests/test_metrics.c.

usage: metrics_ref.py CASES.csv
CASES.csv has the header `case,label,score`; every case is one binary task. For each
case (in order of first appearance) prints one line
    <case> <roc_auc_score> <average_precision_score>
with 17 significant digits, or `<case> nan nan` when the case holds one class only.
Exit status 3 (and a message on stderr) when scikit-learn is not installed, so the C
test can skip with that message instead of failing.
"""
import csv
import sys

try:
    from sklearn.metrics import average_precision_score, roc_auc_score
except ImportError as e:  # pragma: no cover - depends on the machine
    sys.stderr.write("scikit-learn is not available (%s); apt-get install -y python3-sklearn\n" % e)
    sys.exit(3)


def main(path):
    order, cases = [], {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            c = row["case"]
            if c not in cases:
                order.append(c)
                cases[c] = ([], [])
            cases[c][0].append(int(float(row["label"])))
            cases[c][1].append(float(row["score"]))
    for c in order:
        y, s = cases[c]
        if len(set(y)) < 2:
            print(c, "nan", "nan")
            continue
        print(c, "%.17g" % roc_auc_score(y, s), "%.17g" % average_precision_score(y, s))


if __name__ == "__main__":
    main(sys.argv[1])
