#!/usr/bin/python3
"""One table from several benchmarks/moleculenet.sh outputs (sets run in separate
invocations, e.g. side by side on the cores, or resumed in another session).

    benchmarks/moleculenet_collect.py OUT_DIR [OUT_DIR ...] > table.csv

For every <set>/scratch and <set>/pretrained run with a results.csv under the given
folders (the first folder holding a set's column wins): the test metric mean and std over
seeds, the validation mean, the last epoch each seed ran (from seed_<s>.jsonl: with
train.patience, best validation epoch + patience, or train.epochs) and the mean seconds per
epoch. Sets in MoleculeNet order; a column not run is left empty. Prints the Markdown table
to stderr, with the ROC-AUC average over the classification sets that have both columns.
"""
import csv
import glob
import json
import os
import sys

ORDER = ["bbbp", "bace", "clintox", "tox21", "hiv", "sider", "toxcast", "muv", "esol", "freesolv", "lipo"]
COLUMNS = ("scratch", "pretrained")


def column(run):
    """(metric, molecules, test mean, test std, valid mean, epochs per seed, s per epoch) or None."""
    path = os.path.join(run, "results.csv")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        r = next(csv.DictReader(f))
    last = []
    for log in sorted(glob.glob(os.path.join(run, "seed_*.jsonl")), key=lambda p: int(p.rsplit("_", 1)[1].split(".")[0])):
        with open(log) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        if lines:
            last.append(lines[-1]["epoch"])
    return (r["metric"], int(r["n_molecules"]), float(r["test_mean"]), float(r["test_std"]), float(r["valid_mean"]),
            last, float(r.get("epoch_seconds") or 0))


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 0 if len(argv) >= 2 else 2
    found = {}
    for out in argv[1:]:
        if not os.path.isdir(out):
            print(f"moleculenet_collect: {out} is not a folder", file=sys.stderr)
            return 1
        for name in sorted(os.listdir(out)):
            for col in COLUMNS:
                c = column(os.path.join(out, name, col))
                if c and (name, col) not in found:
                    found[(name, col)] = c
    names = [n for n in ORDER if any((n, c) in found for c in COLUMNS)]
    names += sorted({n for n, _ in found} - set(names))
    w = csv.writer(sys.stdout)
    head = ["dataset", "metric", "molecules"]
    for col in COLUMNS:
        head += [f"{col}_test_mean", f"{col}_test_std", f"{col}_valid_mean", f"{col}_epochs_run_per_seed",
                 f"{col}_epoch_seconds"]
    w.writerow(head)
    md = ["| set | molecules | metric | scratch, test | pre-trained, test | difference | epochs run per seed, scratch / pre-trained |",
          "|---|---:|---|---:|---:|---:|---|"]
    both = []
    for n in names:
        s, p = found.get((n, "scratch")), found.get((n, "pretrained"))
        any_col = s or p
        row = [n, any_col[0], any_col[1]]
        for c in (s, p):
            row += [f"{c[2]:.4f}", f"{c[3]:.4f}", f"{c[4]:.4f}", " ".join(map(str, c[5])), f"{c[6]:.2f}"] if c else [""] * 5
        w.writerow(row)
        cell = lambda c: f"{c[2]:.3f} +- {c[3]:.3f}" if c else "-"
        diff = f"{p[2] - s[2]:+.3f}" if s and p else "-"
        eps = " / ".join(", ".join(map(str, c[5])) if c else "-" for c in (s, p))
        md.append(f"| {n} | {any_col[1]} | {'ROC-AUC' if any_col[0] == 'roc_auc' else any_col[0].upper()} | {cell(s)} | {cell(p)} | {diff} | {eps} |")
        if s and p and any_col[0] == "roc_auc":
            both.append((s[2], p[2]))
    print("\n".join(md), file=sys.stderr)
    if both:
        print(f"\nROC-AUC average over the {len(both)} classification set(s) with both columns: scratch "
              f"{sum(b[0] for b in both) / len(both):.3f}, pre-trained {sum(b[1] for b in both) / len(both):.3f}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
