//! RFC 6962 / RFC 9162 Merkle trees over audit entries: leaf and node hashing, the
//! compact range that gives the root of a growing log in O(log n) space, inclusion and
//! consistency proofs built from stored leaf hashes, and their verification.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Why a proof was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("size {first} is larger than size {second}")]
    SizesReversed { first: u64, second: u64 },
    #[error("a consistency proof from the empty tree proves nothing")]
    EmptyFirstTree,
    #[error("proof component {index} is {len} bytes, not 32")]
    BadComponent { index: usize, len: usize },
    #[error("the proof has {got} components where {want} were expected")]
    WrongLength { got: usize, want: usize },
    #[error("the proof does not lead to the given root")]
    RootMismatch,
}

/// The right edge of a tree being built leaf by leaf: the roots of its perfect subtrees,
/// largest first (one per set bit of `size`). Appending is O(log n); so is the root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    nodes: Vec<Hash>,
}

impl CompactRange {
    pub fn new() -> CompactRange {
        CompactRange::default()
    }

    /// A range from its stored form: the size and the concatenated subtree roots.
    pub fn from_parts(size: u64, packed: &[u8]) -> Option<CompactRange> {
        if !packed.len().is_multiple_of(32) || packed.len() / 32 != size.count_ones() as usize {
            return None;
        }
        let nodes = packed
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Some(CompactRange { size, nodes })
    }

    /// The subtree roots concatenated (what the store keeps).
    pub fn packed(&self) -> Vec<u8> {
        self.nodes.concat()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut s = self.size;
        while s & 1 == 1 {
            // A set low bit means a perfect subtree of the same height waits on the left.
            let Some(left) = self.nodes.pop() else { break };
            hash = node_hash(&left, &hash);
            s >>= 1;
        }
        self.nodes.push(hash);
        self.size += 1;
    }

    /// The tree head: MTH of every leaf pushed so far.
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// MTH(D[n]) of a list of leaf hashes.
pub fn root(leaves: &[Hash]) -> Hash {
    let mut r = CompactRange::new();
    for l in leaves {
        r.push(*l);
    }
    r.root()
}

/// The largest power of two smaller than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// The inclusion proof of leaf `index` in the tree of `leaves` (RFC 6962 PATH).
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    let size = leaves.len() as u64;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(index as usize, leaves, &mut out);
    Ok(out)
}

fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
    if d.len() <= 1 {
        return;
    }
    let k = split(d.len());
    if m < k {
        path(m, &d[..k], out);
        out.push(root(&d[k..]));
    } else {
        path(m - k, &d[k..], out);
        out.push(root(&d[..k]));
    }
}

/// The consistency proof between the first `first` leaves and all of `leaves`
/// (RFC 6962 PROOF); empty when the sizes are equal.
pub fn consistency_proof(leaves: &[Hash], first: u64) -> Result<Vec<Hash>, ProofError> {
    let second = leaves.len() as u64;
    if first > second {
        return Err(ProofError::SizesReversed { first, second });
    }
    if first == 0 {
        return Err(ProofError::EmptyFirstTree);
    }
    let mut out = Vec::new();
    if first < second {
        subproof(first as usize, leaves, true, &mut out);
    }
    Ok(out)
}

fn subproof(m: usize, d: &[Hash], whole: bool, out: &mut Vec<Hash>) {
    if m == d.len() {
        if !whole {
            out.push(root(d));
        }
        return;
    }
    let k = split(d.len());
    if m <= k {
        subproof(m, &d[..k], whole, out);
        out.push(root(&d[k..]));
    } else {
        subproof(m - k, &d[k..], false, out);
        out.push(root(&d[..k]));
    }
}

fn component(index: usize, bytes: &[u8]) -> Result<Hash, ProofError> {
    bytes.try_into().map_err(|_| ProofError::BadComponent {
        index,
        len: bytes.len(),
    })
}

/// Verifies that `leaf` is leaf `index` of the tree of `size` leaves whose root is
/// `root` (RFC 9162 §2.1.3.2). Hashes are taken as bytes: a wrong length never matches.
pub fn verify_inclusion<P: AsRef<[u8]>>(
    index: u64,
    size: u64,
    leaf: &[u8],
    proof: &[P],
    root: &[u8],
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let want = inclusion_len(index, size);
    if proof.len() != want {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want,
        });
    }
    let mut r: Hash = leaf.try_into().map_err(|_| ProofError::RootMismatch)?;
    let (mut f, mut s) = (index, size - 1);
    for (i, p) in proof.iter().enumerate() {
        let p = component(i, p.as_ref())?;
        if s == 0 {
            return Err(ProofError::RootMismatch);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(&p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, &p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s == 0 && r.as_slice() == root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// The length of an inclusion proof: the path below the point where the index's and the
/// last leaf's paths part, plus the perfect-subtree steps above it.
fn inclusion_len(index: u64, size: u64) -> usize {
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    inner + border
}

/// Verifies that the tree of `second` leaves with root `root2` extends the tree of
/// `first` leaves with root `root1` (RFC 9162 §2.1.4.2). A proof from the empty tree is
/// refused: it would prove nothing.
pub fn verify_consistency<P: AsRef<[u8]>>(
    first: u64,
    second: u64,
    root1: &[u8],
    root2: &[u8],
    proof: &[P],
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::SizesReversed { first, second });
    }
    if first == 0 {
        return Err(ProofError::EmptyFirstTree);
    }
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: 0,
            });
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let mut nodes: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    for (i, p) in proof.iter().enumerate() {
        nodes.push(component(i, p.as_ref())?);
    }
    if nodes.is_empty() {
        return Err(ProofError::WrongLength { got: 0, want: 1 });
    }
    let r1: Hash = root1.try_into().map_err(|_| ProofError::RootMismatch)?;
    if first.is_power_of_two() {
        nodes.insert(0, r1);
    }
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (nodes[0], nodes[0]);
    for c in &nodes[1..] {
        if s == 0 {
            return Err(ProofError::RootMismatch);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s == 0 && fr == r1 && sr.as_slice() == root2 {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    /// MTH by the RFC's recursive definition, to check the compact range against.
    fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = split(n);
                node_hash(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    #[test]
    fn compact_range_matches_the_recursive_definition_and_round_trips() {
        for n in 0..70 {
            let l = leaves(n);
            let mut r = CompactRange::new();
            for h in &l {
                r.push(*h);
            }
            assert_eq!(r.root(), mth(&l), "size {n}");
            let back = CompactRange::from_parts(r.size(), &r.packed()).unwrap();
            assert_eq!(back, r);
        }
        assert!(CompactRange::from_parts(3, &[0u8; 32]).is_none());
    }

    #[test]
    fn every_generated_proof_verifies_and_no_neighbour_does() {
        for n in 1..40u64 {
            let l = leaves(n as usize);
            let r = mth(&l);
            for i in 0..n {
                let p = inclusion_proof(&l, i).unwrap();
                verify_inclusion(i, n, &l[i as usize], &p, &r).unwrap();
                if n > 1 {
                    let other = (i + 1) % n;
                    assert!(verify_inclusion(other, n, &l[i as usize], &p, &r).is_err());
                }
            }
            for m in 1..=n {
                let p = consistency_proof(&l, m).unwrap();
                let r1 = mth(&l[..m as usize]);
                verify_consistency(m, n, &r1, &r, &p).unwrap();
                if m < n {
                    let r1_wrong = mth(&l[..m as usize - 1]);
                    assert!(verify_consistency(m, n, &r1_wrong, &r, &p).is_err());
                }
            }
        }
    }
}
