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
   is closest (cosine), leaving out reference molecules with the query's constitution
   (graph_hash: NMR8K and Exp5K share molecules, whose SMILES may differ in stereo only;
   a twin would be a trivial hit). How alike are the two spectra (peak match: the fraction of each
   spectrum's peaks with a peak of the other within --tol ppm, averaged both ways), and
   the two molecules (same carbon count, same heavy-atom composition)? Beside: the
   untrained encoder's neighbour, a random reference spectrum, and (with --grid) the
   neighbour by cosine of the binned spectra themselves (the input the encoder compresses
   256-fold; a reference, not a bound).

usage: spectrum_probe.py EMB.h5 --holdout N --tol PPM --out PREFIX [--grid MIN STEP BINS SIGMA]
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


def neighbours(q, r, twin):
    """Index into r of each q row's nearest row by cosine; twin[i, j]: r row j is q row i's molecule."""
    qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    rn = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
    s = qn @ rn.T
    s[twin] = -np.inf
    return np.argmax(s, axis=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("emb")
    ap.add_argument("--holdout", type=int, required=True)
    ap.add_argument("--tol", type=float, required=True, help="peak match tolerance, ppm")
    ap.add_argument("--out", required=True)
    ap.add_argument("--grid", type=float, nargs=4, metavar=("MIN", "STEP", "BINS", "SIGMA"),
                    help="the autoencoder's grid (spectrum.h binning), for the binned-spectrum neighbour")
    a = ap.parse_args()
    with h5py.File(a.emb, "r") as f:
        emb, emb0 = f["emb"][:], f["emb_untrained"][:]
        el, poff, shift = f["elements"][:], f["peak_offset"][:], f["shift"][:]
        hsh = f["graph_hash"][:]
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
    twin = hsh[te][:, None] == hsh[tr][None, :]
    res["held_out_with_a_twin_in_reference"] = int(twin.any(axis=1).sum())
    rand = np.array([rng.choice(tr[~twin[i]]) for i in range(h)])
    nn = {"trained": tr[neighbours(emb[te], emb[tr], twin)], "untrained": tr[neighbours(emb0[te], emb0[tr], twin)],
          "random": rand}
    if a.grid:
        lo, step, bins, sigma = a.grid
        centres = lo + (np.arange(int(bins)) + 0.5) * step
        binned = np.zeros((n, int(bins)), np.float32)
        for i in range(n):
            p = peaks[i][(peaks[i] >= lo) & (peaks[i] < lo + bins * step)]
            d = centres[None, :] - p[:, None]
            binned[i] = np.where(np.abs(d) <= 4 * sigma, np.exp(-d * d / (2 * sigma * sigma)), 0).sum(axis=0)
        nn["binned spectrum (input)"] = tr[neighbours(binned[te], binned[tr], twin)]
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
    lines += ["", f"{res['held_out_with_a_twin_in_reference']} held-out molecules also occur in the reference set; "
              "their twins are left out of the neighbour search.", "",
              f"| nearest reference spectrum of a held-out one | peak match (tol {a.tol} ppm) | same carbon count "
              "| same heavy-atom composition |", "|---|---|---|---|"]
    for k, v in near.items():
        lines.append(f"| {k} | {v['peak_match']:.3f} | {v['same_carbon_count']:.3f} | "
                     f"{v['same_heavy_atom_composition']:.3f} |")
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
