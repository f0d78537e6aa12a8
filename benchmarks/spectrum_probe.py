#!/usr/bin/python3
"""Sanity checks of a spectrum autoencoder's embedding (benchmarks/README.md, "Spectrum
autoencoders"): does the embedding carry what the spectrum says about the molecule?

Input: the file bench_spectrum_embed writes (embeddings of the trained and of the same
untrained encoder, element counts, peaks), in dataset order; the last --holdout rows are
the molecules the run held out (train.holdout), the rest are the reference set.

1. Linear probe (ridge, alpha by cross-validation on the reference set) of the carbon
   count from the embedding, scored on the held-out molecules: R^2 and MAE, beside the
   untrained encoder and the mean predictor.
2. Nearest neighbour: for each held-out spectrum, the reference spectrum whose embedding
   is closest (cosine). How alike are the two spectra (peak match: the fraction of each
   spectrum's peaks with a peak of the other within --tol ppm, averaged both ways), and
   the two molecules (same carbon count, same heavy-atom composition)? Beside: the
   untrained encoder's neighbour and a random reference spectrum.

usage: spectrum_probe.py EMB.h5 --holdout N --tol PPM --out PREFIX
writes PREFIX.json and PREFIX.md."""
import argparse
import json

import h5py
import numpy as np
from sklearn.linear_model import RidgeCV


def peak_match(a, b, tol):
    """Symmetric fraction of peaks with a partner within tol."""
    if len(a) == 0 or len(b) == 0:
        return 0.0
    d = np.abs(a[:, None] - b[None, :])
    return 0.5 * ((d.min(axis=1) <= tol).mean() + (d.min(axis=0) <= tol).mean())


def neighbours(q, r):
    qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    rn = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
    return np.argmax(qn @ rn.T, axis=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("emb")
    ap.add_argument("--holdout", type=int, required=True)
    ap.add_argument("--tol", type=float, required=True, help="peak match tolerance, ppm")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    with h5py.File(a.emb, "r") as f:
        emb, emb0 = f["emb"][:], f["emb_untrained"][:]
        el, poff, shift = f["elements"][:], f["peak_offset"][:], f["shift"][:]
    n = len(emb)
    h = a.holdout
    if not 0 < h < n:
        raise SystemExit(f"--holdout {h} must be between 1 and {n - 1}")
    peaks = [shift[poff[i]:poff[i + 1]] for i in range(n)]
    tr, te = np.arange(n - h), np.arange(n - h, n)
    carbons = el[:, 0].astype(float)
    res = {"file": a.emb, "spectra": int(n), "held_out": int(h), "embedding_width": int(emb.shape[1]),
           "tolerance_ppm": a.tol}
    # 1. linear probe of the carbon count
    probe = {}
    for name, X in (("trained", emb), ("untrained", emb0)):
        m = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(X[tr], carbons[tr])
        p = m.predict(X[te])
        ss = ((carbons[te] - carbons[te].mean()) ** 2).sum()
        probe[name] = {"r2": float(1 - ((carbons[te] - p) ** 2).sum() / ss),
                       "mae": float(np.abs(carbons[te] - p).mean()), "alpha": float(m.alpha_)}
    probe["mean predictor"] = {"r2": 0.0, "mae": float(np.abs(carbons[te] - carbons[tr].mean()).mean())}
    res["carbon_count_probe"] = probe
    # 2. nearest neighbours
    rng = np.random.default_rng(0)
    nn = {"trained": tr[neighbours(emb[te], emb[tr])], "untrained": tr[neighbours(emb0[te], emb0[tr])],
          "random": rng.choice(tr, size=h)}
    near = {}
    for name, j in nn.items():
        near[name] = {
            "peak_match": float(np.mean([peak_match(peaks[i], peaks[k], a.tol) for i, k in zip(te, j)])),
            "same_carbon_count": float(np.mean(el[te, 0] == el[j, 0])),
            "same_heavy_atom_composition": float(np.mean(np.all(el[te] == el[j], axis=1))),
        }
    res["nearest_neighbour"] = near
    with open(a.out + ".json", "w") as f:
        json.dump(res, f, indent=1)
    lines = [f"{n} spectra, the last {h} held out; embedding width {emb.shape[1]}", "",
             "| carbon-count probe (held out) | R^2 | MAE |", "|---|---|---|"]
    for k, v in probe.items():
        lines.append(f"| {k} | {v['r2']:.3f} | {v['mae']:.2f} |")
    lines += ["", f"| nearest reference spectrum of a held-out one | peak match (tol {a.tol} ppm) | same carbon count "
              "| same heavy-atom composition |", "|---|---|---|---|"]
    for k, v in near.items():
        lines.append(f"| {k} | {v['peak_match']:.3f} | {v['same_carbon_count']:.3f} | "
                     f"{v['same_heavy_atom_composition']:.3f} |")
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
