#!/usr/bin/python3
"""RDKit side of the scaffold-split test (tests/test_mpi_finetune.c).

usage: scaffold_split_ref.py DATASET.h5 SPLIT.json RULE [FRAC_TRAIN FRAC_VALID]

Recomputes the Bemis-Murcko scaffold of every molecule of DATASET.h5 (its /smiles, the
Open Babel canonical SMILES written by mmsa_prep) with RDKit's MurckoScaffoldSmiles
(includeChirality=False, as chemprop), groups the molecules by that string, splits
the groups with RULE (deepchem: the MoleculeNet ScaffoldSplitter / pretrain-gnns rule;
chemprop: chemprop's scaffold_split, balanced=False), and compares the membership
with SPLIT.json (written by mmsa_finetune). Prints one JSON object:
  n, groups_rdkit, groups_mmsa (distinct /scaffold strings), same_group (molecules whose
  scaffold group has the same members in both), agree (molecules in the same split),
  agreement (agree / n), sizes_rdkit and sizes_mmsa ([train, valid, test]).
Exit status 3 (message on stderr) when RDKit, h5py or numpy is missing.
"""
import json
import sys

try:
    import h5py
    from rdkit import Chem, RDLogger
    from rdkit.Chem.Scaffolds import MurckoScaffold
except ImportError as e:  # pragma: no cover - depends on the machine
    sys.stderr.write("RDKit or h5py is not available (%s); apt-get install -y python3-rdkit python3-h5py\n" % e)
    sys.exit(3)


def scaffold(smiles):
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:  # its own group, keyed by the input
        return "unparsable:" + smiles
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def group(keys):
    groups = {}  # insertion order = order of first occurrence
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    return groups


def split_deepchem(groups, n, ft, fv):
    sets = [s for (_, s) in sorted(groups.items(), key=lambda x: (len(x[1]), x[1][0]), reverse=True)]
    train_cutoff, valid_cutoff = ft * n, (ft + fv) * n
    train, valid, test = [], [], []
    for s in sets:
        if len(train) + len(s) > train_cutoff:
            if len(train) + len(valid) + len(s) > valid_cutoff:
                test += s
            else:
                valid += s
        else:
            train += s
    return train, valid, test


def split_chemprop(groups, n, ft, fv):
    sets = sorted(groups.values(), key=len, reverse=True)
    train_size, val_size = ft * n, fv * n
    train, valid, test = [], [], []
    for s in sets:
        if len(train) + len(s) <= train_size:
            train += s
        elif len(valid) + len(s) <= val_size:
            valid += s
        else:
            test += s
    return train, valid, test


def main():
    path, split_path, rule = sys.argv[1], sys.argv[2], sys.argv[3]
    ft = float(sys.argv[4]) if len(sys.argv) > 4 else 0.8
    fv = float(sys.argv[5]) if len(sys.argv) > 5 else 0.1
    RDLogger.DisableLog("rdApp.*")
    with h5py.File(path, "r") as f:
        smiles = [s.decode() if isinstance(s, bytes) else s for s in f["smiles"][:]]
        ours_scaf = [s.decode() if isinstance(s, bytes) else s for s in f["scaffold"][:]]
    with open(split_path) as f:
        ours = json.load(f)
    n = ours["n"]
    smiles, ours_scaf = smiles[:n], ours_scaf[:n]
    g_rd = group([scaffold(s) for s in smiles])
    g_us = group(ours_scaf)
    member_rd = {}
    for s in g_rd.values():
        for i in s:
            member_rd[i] = s
    same_group = 0
    for s in g_us.values():
        for i in s:
            same_group += member_rd[i] == s
    fn = split_deepchem if rule == "deepchem" else split_chemprop
    ref = fn(g_rd, n, ft, fv)
    where_ref, where_us = [0] * n, [0] * n
    for k, part in enumerate(ref):
        for i in part:
            where_ref[i] = k
    for k, name in enumerate(["train", "valid", "test"]):
        for i in ours[name]:
            where_us[i] = k
    agree = sum(a == b for a, b in zip(where_ref, where_us))
    print(json.dumps({"n": n, "groups_rdkit": len(g_rd), "groups_mmsa": len(g_us), "same_group": same_group,
                      "agree": agree, "agreement": agree / n, "sizes_rdkit": [len(p) for p in ref],
                      "sizes_mmsa": [ours["n_train"], ours["n_valid"], ours["n_test"]]}))


if __name__ == "__main__":
    main()
