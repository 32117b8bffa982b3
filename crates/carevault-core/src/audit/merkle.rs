//! The Merkle tree over the audit log, hashed as RFC 9162 (and RFC 6962) define it: a leaf is
//! `SHA-256(0x00 ‖ record's canonical encoding)`, an interior node `SHA-256(0x01 ‖ left ‖ right)`,
//! and a tree of `n` leaves splits at the largest power of two below `n`. Any auditor's tool
//! that speaks Certificate Transparency can check its tree heads and proofs.
//!
//! What the writer keeps: the *frontier* (the roots of the perfect subtrees that make up the
//! tree so far, at most 64 hashes) in the chain head row, so a new root costs O(log n); and the
//! root of every complete block of [`BLOCK`] leaves in `audit_tree_blocks`, so a proof needs at
//! most two blocks' records from the log and a few thousand stored hashes at a million records.

use std::collections::{BTreeMap, BTreeSet};

pub(crate) type Hash = [u8; 32];

/// Leaves per stored block (a perfect subtree of height [`BLOCK_LEVEL`]).
pub(crate) const BLOCK_LEVEL: u32 = 8;
pub(crate) const BLOCK: u64 = 1 << BLOCK_LEVEL;

pub(crate) fn leaf_hash(canonical: &[u8]) -> Hash {
    carevault_crypto::sha256(&[&[0u8], canonical])
}

pub(crate) fn node_hash(left: &Hash, right: &Hash) -> Hash {
    carevault_crypto::sha256(&[&[1u8], left, right])
}

/// The root of the empty tree: SHA-256 of nothing.
pub(crate) fn empty_root() -> Hash {
    carevault_crypto::sha256(&[])
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The compact range `[0, size)`: one perfect subtree root per set bit of `size`, largest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf; returns the block completed by it, as (block index, block root).
    pub(crate) fn push(&mut self, leaf: Hash) -> Option<(u64, Hash)> {
        let mut node = leaf;
        let mut level = 0u32;
        let mut block = None;
        while self.size & (1u64 << level) != 0 {
            let left = self.nodes.pop().unwrap_or([0u8; 32]);
            node = node_hash(&left, &node);
            level += 1;
            if level == BLOCK_LEVEL {
                block = Some(((self.size + 1) / BLOCK - 1, node));
            }
        }
        self.nodes.push(node);
        self.size += 1;
        block
    }

    pub(crate) fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(last) => it.fold(*last, |acc, n| node_hash(n, &acc)),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.nodes.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        for n in &self.nodes {
            out.extend_from_slice(n);
        }
        out
    }

    /// `None` unless the bytes are a well-formed frontier.
    pub(crate) fn decode(b: &[u8]) -> Option<Frontier> {
        let size = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
        let rest = &b[8..];
        if rest.len() != 32 * size.count_ones() as usize {
            return None;
        }
        let nodes = rest.chunks_exact(32).map(|c| c.try_into().unwrap_or([0u8; 32])).collect();
        Some(Frontier { size, nodes })
    }
}

/// The hashes a proof over a tree of `size` leaves is computed from: stored block roots, and the
/// leaf hashes of the few blocks whose inside the proof needs. Computing a proof first runs dry
/// to learn which blocks' leaves are needed ([`TreeView::missing`]), then for real.
pub(crate) struct TreeView {
    size: u64,
    blocks: BTreeMap<u64, Hash>,
    leaves: BTreeMap<u64, Vec<Hash>>,
    missing: BTreeSet<u64>,
}

impl TreeView {
    pub(crate) fn new(size: u64, blocks: BTreeMap<u64, Hash>) -> TreeView {
        TreeView { size, blocks, leaves: BTreeMap::new(), missing: BTreeSet::new() }
    }

    /// Blocks whose leaf hashes the last computation lacked.
    pub(crate) fn missing(&self) -> &BTreeSet<u64> {
        &self.missing
    }

    pub(crate) fn add_leaves(&mut self, block: u64, leaves: Vec<Hash>) {
        self.missing.remove(&block);
        self.leaves.insert(block, leaves);
    }

    fn leaf(&mut self, i: u64) -> Hash {
        let b = i / BLOCK;
        match self.leaves.get(&b).and_then(|l| l.get((i % BLOCK) as usize)) {
            Some(h) => *h,
            None => {
                self.missing.insert(b);
                [0u8; 32]
            }
        }
    }

    /// MTH(D[a:b]).
    fn mth(&mut self, a: u64, b: u64) -> Hash {
        let n = b - a;
        if n == 1 {
            return self.leaf(a);
        }
        if n == BLOCK && a & (BLOCK - 1) == 0 && b <= self.size {
            if let Some(h) = self.blocks.get(&(a / BLOCK)) {
                return *h;
            }
        }
        let k = split(n);
        let l = self.mth(a, a + k);
        let r = self.mth(a + k, b);
        node_hash(&l, &r)
    }

    pub(crate) fn root(&mut self) -> Hash {
        if self.size == 0 {
            return empty_root();
        }
        self.mth(0, self.size)
    }

    /// PATH(m, D[n]) of RFC 9162 §2.1.3.1, bottom first.
    pub(crate) fn inclusion(&mut self, m: u64) -> Vec<Hash> {
        let mut out = Vec::new();
        self.path(m, 0, self.size, &mut out);
        out
    }

    fn path(&mut self, m: u64, a: u64, b: u64, out: &mut Vec<Hash>) {
        if b - a <= 1 {
            return;
        }
        let k = split(b - a);
        if m < a + k {
            self.path(m, a, a + k, out);
            let h = self.mth(a + k, b);
            out.push(h);
        } else {
            self.path(m, a + k, b, out);
            let h = self.mth(a, a + k);
            out.push(h);
        }
    }

    /// PROOF(m, D[n]) of RFC 9162 §2.1.4.1 (empty when m == n).
    pub(crate) fn consistency(&mut self, m: u64) -> Vec<Hash> {
        let mut out = Vec::new();
        if m > 0 && m < self.size {
            self.subproof(m, 0, self.size, true, &mut out);
        }
        out
    }

    fn subproof(&mut self, m: u64, a: u64, b: u64, complete: bool, out: &mut Vec<Hash>) {
        let n = b - a;
        if m == n {
            if !complete {
                let h = self.mth(a, b);
                out.push(h);
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, a, a + k, complete, out);
            let h = self.mth(a + k, b);
            out.push(h);
        } else {
            self.subproof(m - k, a + k, b, false, out);
            let h = self.mth(a, a + k);
            out.push(h);
        }
    }
}

/// RFC 9162 §2.1.3.2: does `path` prove leaf `index` in a tree of `size` with `root`?
#[cfg(test)]
pub(crate) fn verify_inclusion(index: u64, size: u64, leaf: &Hash, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// RFC 9162 §2.1.4.2: does `proof` show the tree (`second`, `root2`) extends (`first`, `root1`)?
#[cfg(test)]
pub(crate) fn verify_consistency(first: u64, second: u64, root1: &Hash, root2: &Hash, proof: &[Hash]) -> bool {
    if first == second {
        return proof.is_empty() && root1 == root2;
    }
    if first == 0 || first > second || proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if first.is_power_of_two() {
        path.insert(0, *root1);
    }
    let (mut f_n, mut s_n) = (first - 1, second - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    fr == *root1 && sr == *root2 && s_n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(s: &str) -> Hash {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).expect("hex");
        out
    }

    /// The leaf inputs and roots published with Certificate Transparency's reference code.
    const INPUTS: [&str; 8] = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn reference_leaves() -> Vec<Hash> {
        INPUTS.iter().map(|i| leaf_hash(&hex::decode(i).expect("hex"))).collect()
    }

    fn view(leaves: &[Hash]) -> TreeView {
        let mut v = TreeView::new(leaves.len() as u64, BTreeMap::new());
        for (b, chunk) in leaves.chunks(BLOCK as usize).enumerate() {
            v.add_leaves(b as u64, chunk.to_vec());
        }
        v
    }

    #[test]
    fn roots_match_the_certificate_transparency_vectors() {
        let leaves = reference_leaves();
        assert_eq!(Frontier::default().root(), h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        let mut f = Frontier::default();
        for (n, leaf) in leaves.iter().enumerate() {
            f.push(*leaf);
            assert_eq!(f.root(), h(ROOTS[n]), "size {}", n + 1);
            assert_eq!(view(&leaves[..=n]).root(), h(ROOTS[n]));
        }
    }

    #[test]
    fn proofs_match_the_certificate_transparency_vectors() {
        let leaves = reference_leaves();
        let inclusion: &[(u64, usize, &[&str])] = &[
            (0, 1, &[]),
            (0, 2, &["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"]),
            (1, 2, &["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"]),
            (2, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (m, n, want) in inclusion {
            let got = view(&leaves[..*n]).inclusion(*m);
            assert_eq!(got, want.iter().map(|s| h(s)).collect::<Vec<_>>(), "PATH({m}, D[{n}])");
            assert!(verify_inclusion(*m, *n as u64, &leaves[*m as usize], &got, &h(ROOTS[n - 1])));
        }
        let consistency: &[(u64, usize, &[&str])] = &[
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (m, n, want) in consistency {
            let got = view(&leaves[..*n]).consistency(*m);
            assert_eq!(got, want.iter().map(|s| h(s)).collect::<Vec<_>>(), "PROOF({m}, D[{n}])");
            assert!(verify_consistency(*m, *n as u64, &h(ROOTS[*m as usize - 1]), &h(ROOTS[n - 1]), &got));
        }
    }

    fn synthetic(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(format!("record-{i}").as_bytes())).collect()
    }

    #[test]
    fn frontier_reports_each_block_once_and_round_trips() {
        let leaves = synthetic(3 * BLOCK as usize + 5);
        let mut f = Frontier::default();
        let mut blocks = BTreeMap::new();
        for l in &leaves {
            if let Some((i, hsh)) = f.push(*l) {
                assert!(blocks.insert(i, hsh).is_none());
            }
            assert_eq!(Frontier::decode(&f.encode()), Some(f.clone()));
        }
        assert_eq!(blocks.len(), 3);
        for (i, hsh) in &blocks {
            let s = (*i * BLOCK) as usize;
            assert_eq!(*hsh, view(&leaves[s..s + BLOCK as usize]).root());
        }
        // A view built from the stored blocks and only the partial last block gives the same root.
        let mut v = TreeView::new(leaves.len() as u64, blocks);
        v.root();
        assert_eq!(v.missing().iter().copied().collect::<Vec<_>>(), vec![3]);
        v.add_leaves(3, leaves[3 * BLOCK as usize..].to_vec());
        assert_eq!(v.root(), f.root());
        assert!(Frontier::decode(&[0u8; 7]).is_none());
        assert!(Frontier::decode(&[0, 0, 0, 0, 0, 0, 0, 3, 1]).is_none());
    }

    proptest! {
        /// Every inclusion and consistency proof over blocks and partial leaves verifies against
        /// the frontier's roots, and a proof for another leaf or an altered log does not.
        #[test]
        fn proofs_verify_against_frontier_roots(n in 1u64..700, m_seed in any::<u64>(), i_seed in any::<u64>()) {
            let leaves = synthetic(n as usize);
            let mut f = Frontier::default();
            let mut roots = vec![empty_root()];
            let mut blocks = BTreeMap::new();
            for l in &leaves {
                if let Some((b, hsh)) = f.push(*l) { blocks.insert(b, hsh); }
                roots.push(f.root());
            }
            let m = 1 + m_seed % n;
            let i = i_seed % n;
            let mut v = TreeView::new(n, blocks.clone());
            v.inclusion(i);
            v.consistency(m);
            let needed: Vec<u64> = v.missing().iter().copied().collect();
            prop_assert!(needed.len() <= 3, "{needed:?}");
            for b in needed {
                let s = (b * BLOCK) as usize;
                v.add_leaves(b, leaves[s..(s + BLOCK as usize).min(n as usize)].to_vec());
            }
            let path = v.inclusion(i);
            let cons = v.consistency(m);
            prop_assert!(v.missing().is_empty());
            prop_assert!(verify_inclusion(i, n, &leaves[i as usize], &path, &roots[n as usize]));
            prop_assert!(verify_consistency(m, n, &roots[m as usize], &roots[n as usize], &cons));
            if n > 1 {
                let other = (i + 1) % n;
                prop_assert!(!verify_inclusion(other, n, &leaves[i as usize], &path, &roots[n as usize]));
            }
            if m < n {
                let mut forged = leaves.clone();
                forged[(m - 1) as usize] = leaf_hash(b"forged");
                let mut g = Frontier::default();
                for l in &forged[..m as usize] { g.push(*l); }
                prop_assert!(!verify_consistency(m, n, &g.root(), &roots[n as usize], &cons));
            }
        }
    }
}
