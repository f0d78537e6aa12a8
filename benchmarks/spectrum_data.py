#!/usr/bin/python3
"""The spectrum autoencoders' corpus: CASCADE's NMR8K and Exp5K_DFT SD files in one SD file,
ordered so that the molecules a run holds out (train.holdout: the last N with a 13C spectrum)
have no twin anywhere before them.

Why: Exp5K_DFT's molecules are nearly all in NMR8K too (5,115 of 5,137 by constitution), often
with the same peaks, and their SMILES may differ in stereo only (Exp5K has DFT 3D coordinates).
Held-out spectra whose molecule was trained on under the other file's record would make the
sanity checks (benchmarks/spectrum_probe.py) easy. So the output is: the NMR8K records except
the held-out ones, then all Exp5K_DFT records, then the last --holdout NMR8K records that have
a 13C spectrum and whose constitution (RDKit canonical SMILES without stereo) is not in
Exp5K_DFT.

usage: spectrum_data.py [--shared ../shared] [--holdout 500] --out cascade_nmr.sdf.gz"""
import argparse
import gzip
import os

from rdkit import Chem, RDLogger


def records(path):
    with gzip.open(path, "rt", errors="replace") as f:
        buf = []
        for line in f:
            buf.append(line)
            if line.startswith("$$$$"):
                yield "".join(buf)
                buf = []


def constitution(rec):
    m = Chem.MolFromMolBlock(rec, sanitize=True)
    return Chem.MolToSmiles(m, isomericSmiles=False) if m is not None else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    ap.add_argument("--holdout", type=int, default=500)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    RDLogger.DisableLog("rdApp.*")
    d = os.path.join(a.shared, "data", "spectra_3d")
    nmr8k = list(records(os.path.join(d, "cascade_NMR8K.sdf.gz")))
    exp5k = list(records(os.path.join(d, "cascade_Exp5K_DFT.sdf.gz")))
    exp_keys = {constitution(r) for r in exp5k} - {None}
    held = []
    for i in range(len(nmr8k) - 1, -1, -1):
        if len(held) == a.holdout:
            break
        r = nmr8k[i]
        if "<Spectrum 13C" in r:
            k = constitution(r)
            if k is not None and k not in exp_keys:
                held.append(i)
    if len(held) < a.holdout:
        raise SystemExit(f"only {len(held)} NMR8K molecules with 13C have no twin in Exp5K_DFT")
    held.reverse()
    hs = set(held)
    with gzip.open(a.out, "wt", compresslevel=1) as f:
        for i, r in enumerate(nmr8k):
            if i not in hs:
                f.write(r)
        for r in exp5k:
            f.write(r)
        for i in held:
            f.write(nmr8k[i])
    print(f"{a.out}: {len(nmr8k) - len(held)} NMR8K records, {len(exp5k)} Exp5K_DFT records, then {len(held)} "
          f"NMR8K records with 13C and no twin in Exp5K_DFT (NMR8K rows {held[0]}..{held[-1]})")


if __name__ == "__main__":
    main()
