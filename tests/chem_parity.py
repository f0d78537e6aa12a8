#!/usr/bin/python3
"""RDKit side of the chemistry parity test (run by tests/test_chem.c).

Usage: chem_parity.py IN.tsv OUT.txt

IN.tsv, one molecule per line: index, canonical SMILES written by the featuriser,
original SMILES from the data file, scaffold SMILES written by the featuriser.

For each molecule, RDKit parses the featuriser's canonical SMILES, so RDKit's atom i is
the i-th atom of that string -- the featuriser's atom i -- and its bond k is RDKit's bond
k, which the featuriser promises to reproduce. The OGB features are computed with a copy
of ogb.utils.features (OGB itself is not installed), with one change the golden file
documents: chirality tags outside OGB's list map to "misc" instead of raising.

OUT.txt lines (all integers unless noted):
  M idx ok n_atoms n_bonds same_molecule
      ok = 0 if RDKit cannot parse the canonical SMILES; same_molecule = 1 if RDKit's
      isomeric canonical SMILES of the original and of the featuriser's SMILES agree
  A idx atom f0 .. f8            OGB atom features
  B idx bond begin end f0 f1 f2  OGB bond features
  S idx rdkit_scaffold our_scaffold   (strings, RDKit-canonical; "-" for empty)
"""
import sys

from rdkit import Chem, RDLogger
from rdkit.Chem.Scaffolds import MurckoScaffold

RDLogger.DisableLog("rdApp.*")

ATOMIC_NUM = list(range(1, 119)) + ["misc"]
CHIRALITY = ["CHI_UNSPECIFIED", "CHI_TETRAHEDRAL_CW", "CHI_TETRAHEDRAL_CCW", "CHI_OTHER", "misc"]
DEGREE = list(range(0, 11)) + ["misc"]
CHARGE = list(range(-5, 6)) + ["misc"]
NUM_H = list(range(0, 9)) + ["misc"]
RADICAL = list(range(0, 5)) + ["misc"]
HYBRID = ["SP", "SP2", "SP3", "SP3D", "SP3D2", "misc"]
BOOL = [False, True]
BOND_TYPE = ["SINGLE", "DOUBLE", "TRIPLE", "AROMATIC", "misc"]
BOND_STEREO = ["STEREONONE", "STEREOZ", "STEREOE", "STEREOCIS", "STEREOTRANS", "STEREOANY"]


def safe_index(values, v):
    try:
        return values.index(v)
    except ValueError:
        return len(values) - 1


def atom_features(atom):
    return [
        safe_index(ATOMIC_NUM, atom.GetAtomicNum()),
        safe_index(CHIRALITY, str(atom.GetChiralTag())),
        safe_index(DEGREE, atom.GetTotalDegree()),
        safe_index(CHARGE, atom.GetFormalCharge()),
        safe_index(NUM_H, atom.GetTotalNumHs()),
        safe_index(RADICAL, atom.GetNumRadicalElectrons()),
        safe_index(HYBRID, str(atom.GetHybridization())),
        BOOL.index(atom.GetIsAromatic()),
        BOOL.index(atom.IsInRing()),
    ]


def bond_features(bond):
    return [
        safe_index(BOND_TYPE, str(bond.GetBondType())),
        safe_index(BOND_STEREO, str(bond.GetStereo())),
        BOOL.index(bond.GetIsConjugated()),
    ]


def canon(smiles, isomeric):
    m = Chem.MolFromSmiles(smiles) if smiles else None
    if m is None:
        return None
    return Chem.MolToSmiles(m, isomericSmiles=isomeric)


def scaffold_of(smiles):
    m = Chem.MolFromSmiles(smiles)
    if m is None:
        return None
    s = MurckoScaffold.MurckoScaffoldSmiles(mol=m, includeChirality=False)
    # re-canonicalise: RDKit writes the scaffold from an unsanitised copy
    return canon(s, False) if s else ""


def main():
    src, dst = sys.argv[1], sys.argv[2]
    out = []
    with open(src) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 4:
                continue
            idx, ours, orig, our_scaf = parts[0], parts[1], parts[2], parts[3]
            mol = Chem.MolFromSmiles(ours)
            if mol is None:
                out.append("M %s 0 0 0 0" % idx)
                continue
            same = int(canon(orig, True) == Chem.MolToSmiles(mol))
            if not same:
                print("  not the same molecule: %s -> %s (RDKit: %s vs %s)"
                      % (orig, ours, canon(orig, True), Chem.MolToSmiles(mol)))
            out.append("M %s 1 %d %d %d" % (idx, mol.GetNumAtoms(), mol.GetNumBonds(), same))
            for a in mol.GetAtoms():
                out.append("A %s %d %s" % (idx, a.GetIdx(), " ".join(map(str, atom_features(a)))))
            for b in mol.GetBonds():
                out.append("B %s %d %d %d %s" % (idx, b.GetIdx(), b.GetBeginAtomIdx(), b.GetEndAtomIdx(),
                                                 " ".join(map(str, bond_features(b)))))
            rd_scaf = scaffold_of(orig)
            our = canon(our_scaf, False) if our_scaf else ""
            out.append("S %s %s %s" % (idx, rd_scaf if rd_scaf else "-",
                                       our if our else ("-" if our == "" else "?")))
    with open(dst, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
