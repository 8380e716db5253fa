//! The transparency log: an append-only Merkle tree with RFC 6962 hashing,
//! inclusion and consistency proofs, and signed checkpoints.
//!
//! Leaves are record ids (32 bytes). `leaf_hash = SHA-256(0x00 || id)`,
//! `node_hash = SHA-256(0x01 || left || right)`; the tree of n leaves splits
//! at the largest power of two below n (RFC 6962 §2.1). Proof generation and
//! verification follow RFC 9162 §2.1.3-2.1.4.
//!
//! A checkpoint is the text
//! `"wuding-log/v1\n" + size + "\n" + root hex + "\n" + timestamp_ms + "\n"`
//! signed by the server's Ed25519 key with the context
//! `wuding/checkpoint/v1` + NUL.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::RecordId;
use crate::keys::{TerminalKey, TerminalSigner};

/// Signing context of checkpoints.
pub const CHECKPOINT_CONTEXT: &[u8] = b"wuding/checkpoint/v1\0";

pub type Hash = [u8; 32];

/// RFC 6962 leaf hash of a record id.
pub fn leaf_hash(id: &RecordId) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(id.0);
    h.finalize().into()
}

/// RFC 6962 interior node hash.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// An append-only tree kept as levels of complete subtrees: `levels[0]` are
/// the leaf hashes, `levels[k][i]` the hash of leaves `i*2^k .. (i+1)*2^k`.
/// Appending is O(log n); roots and proofs for any earlier size are
/// O(log² n).
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    pub fn new() -> MerkleTree {
        MerkleTree {
            levels: vec![Vec::new()],
        }
    }

    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a leaf (already hashed with [`leaf_hash`]); returns its index.
    pub fn push(&mut self, leaf: Hash) -> u64 {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let index = self.levels[0].len() as u64 - 1;
        let mut level = 0;
        while self.levels[level].len().is_multiple_of(2) {
            let n = self.levels[level].len();
            let parent = node_hash(&self.levels[level][n - 2], &self.levels[level][n - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(parent);
            level += 1;
        }
        index
    }

    /// Hash of leaves `start..end` (end <= len). `start` must be aligned to a
    /// power of two at least as large as the range, or the range must end at
    /// the tree's right edge for some size; handled recursively in general.
    fn range_hash(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n == 0 {
            return empty_root();
        }
        if n.is_power_of_two() && start.is_multiple_of(n) {
            let level = n.trailing_zeros() as usize;
            return self.levels[level][(start >> level) as usize];
        }
        let k = split(n);
        node_hash(
            &self.range_hash(start, start + k),
            &self.range_hash(start + k, end),
        )
    }

    /// Root of the tree as it was at `size` leaves.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        (size <= self.len()).then(|| self.range_hash(0, size))
    }

    pub fn root(&self) -> Hash {
        self.range_hash(0, self.len())
    }

    /// Inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        if index >= size || size > self.len() {
            return None;
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof);
        Some(proof)
    }

    fn path(&self, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, start, start + k, out);
            out.push(self.range_hash(start + k, end));
        } else {
            self.path(m - k, start + k, end, out);
            out.push(self.range_hash(start, start + k));
        }
    }

    /// Consistency proof from the tree at `old` leaves to the tree at `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Option<Vec<Hash>> {
        if old > new || new > self.len() {
            return None;
        }
        let mut proof = Vec::new();
        if old > 0 && old < new {
            self.subproof(old, 0, new, true, &mut proof);
        }
        Some(proof)
    }

    fn subproof(&self, m: u64, start: u64, end: u64, complete: bool, out: &mut Vec<Hash>) {
        let n = end - start;
        if m == n {
            if !complete {
                out.push(self.range_hash(start, end));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, start + k, complete, out);
            out.push(self.range_hash(start + k, end));
        } else {
            self.subproof(m - k, start + k, end, false, out);
            out.push(self.range_hash(start, start + k));
        }
    }
}

/// The largest power of two strictly less than `n` (n >= 2).
fn split(n: u64) -> u64 {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && &r == root
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return proof.is_empty();
    }
    let mut proof: Vec<Hash> = proof.to_vec();
    if old_size.is_power_of_two() {
        proof.insert(0, *old_root);
    }
    if proof.is_empty() {
        return false;
    }
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut fr = proof[0];
    let mut sr = proof[0];
    for c in &proof[1..] {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && &fr == old_root && &sr == new_root
}

/// A signed statement of the log's size and root at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub size: u64,
    /// Root hash, lowercase hex.
    pub root: String,
    pub timestamp_ms: i64,
    /// The log key's id (see [`crate::KeyId`]).
    pub key_id: String,
    /// Ed25519 signature over the checkpoint text, lowercase hex.
    pub signature: String,
}

impl Checkpoint {
    /// The exact text that is signed.
    pub fn text(size: u64, root: &Hash, timestamp_ms: i64) -> String {
        format!(
            "wuding-log/v1\n{size}\n{}\n{timestamp_ms}\n",
            hex::encode(root)
        )
    }

    pub fn sign(signer: &TerminalSigner, size: u64, root: &Hash, timestamp_ms: i64) -> Checkpoint {
        let text = Checkpoint::text(size, root, timestamp_ms);
        let signature = signer.sign_with_context(CHECKPOINT_CONTEXT, text.as_bytes());
        Checkpoint {
            size,
            root: hex::encode(root),
            timestamp_ms,
            key_id: signer.key_id().to_hex(),
            signature: hex::encode(signature),
        }
    }

    /// The root, if well-formed.
    pub fn root_hash(&self) -> Option<Hash> {
        crate::ids::parse_lower_hex(&self.root)
    }

    /// Checks the signature with the log's public key.
    pub fn verify(&self, log_key: &TerminalKey) -> bool {
        let (Some(root), Some(sig)) = (
            self.root_hash(),
            crate::ids::parse_lower_hex::<64>(&self.signature),
        ) else {
            return false;
        };
        self.key_id == log_key.id().to_hex()
            && log_key.verify_with_context(
                CHECKPOINT_CONTEXT,
                Checkpoint::text(self.size, &root, self.timestamp_ms).as_bytes(),
                &sig,
            )
    }
}

/// What the server returns for an accepted record: proof that the record is
/// in the log at `log_index`, under a signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub record_id: RecordId,
    pub log_index: u64,
    /// Sibling hashes, lowercase hex, leaf to root.
    pub inclusion_proof: Vec<String>,
    pub checkpoint: Checkpoint,
}

impl Receipt {
    /// Verifies the checkpoint's signature and the inclusion of the record.
    pub fn verify(&self, log_key: &TerminalKey) -> bool {
        if !self.checkpoint.verify(log_key) {
            return false;
        }
        let Some(root) = self.checkpoint.root_hash() else {
            return false;
        };
        let proof: Option<Vec<Hash>> = self
            .inclusion_proof
            .iter()
            .map(|h| crate::ids::parse_lower_hex(h))
            .collect();
        let Some(proof) = proof else { return false };
        verify_inclusion(
            &leaf_hash(&self.record_id),
            self.log_index,
            self.checkpoint.size,
            &proof,
            &root,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(n: u64) -> (MerkleTree, Vec<Hash>) {
        let mut t = MerkleTree::new();
        let leaves: Vec<Hash> = (0..n)
            .map(|i| leaf_hash(&RecordId::of_payload(&i.to_le_bytes())))
            .collect();
        for l in &leaves {
            t.push(*l);
        }
        (t, leaves)
    }

    /// Reference root straight from the RFC 6962 definition.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    #[test]
    fn rfc6962_known_answers() {
        // The empty tree and the RFC 6962 test-vector leaf hash of "" (0x00).
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut h = Sha256::new();
        h.update([0u8]);
        let leaf_of_empty: Hash = h.finalize().into();
        assert_eq!(
            hex::encode(leaf_of_empty),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn roots_match_the_definition_for_every_size() {
        let (t, leaves) = tree(70);
        for n in 0..=70u64 {
            assert_eq!(
                t.root_at(n).unwrap(),
                reference_root(&leaves[..n as usize]),
                "size {n}"
            );
        }
    }

    #[test]
    fn every_inclusion_proof_verifies_and_tampering_fails() {
        let (t, leaves) = tree(37);
        for n in 1..=37u64 {
            let root = t.root_at(n).unwrap();
            for i in 0..n {
                let proof = t.inclusion_proof(i, n).unwrap();
                assert!(
                    verify_inclusion(&leaves[i as usize], i, n, &proof, &root),
                    "{i}/{n}"
                );
                let other = leaves[(i as usize + 1) % leaves.len()];
                assert!(
                    !verify_inclusion(&other, i, n, &proof, &root),
                    "{i}/{n}: a different leaf"
                );
                if !proof.is_empty() {
                    let mut bad = proof.clone();
                    bad[0][0] ^= 1;
                    assert!(!verify_inclusion(&leaves[i as usize], i, n, &bad, &root));
                }
            }
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_tampering_fails() {
        let (t, _) = tree(33);
        for new in 0..=33u64 {
            for old in 0..=new {
                let proof = t.consistency_proof(old, new).unwrap();
                let (a, b) = (t.root_at(old).unwrap(), t.root_at(new).unwrap());
                assert!(verify_consistency(old, new, &a, &b, &proof), "{old}->{new}");
                if old > 0 && old < new {
                    let mut wrong = a;
                    wrong[5] ^= 1;
                    assert!(
                        !verify_consistency(old, new, &wrong, &b, &proof),
                        "{old}->{new}"
                    );
                }
            }
        }
    }

    #[test]
    fn checkpoints_and_receipts_verify_only_with_the_log_key() {
        let log = TerminalSigner::from_seed(&[3; 32]);
        let other = TerminalSigner::from_seed(&[4; 32]);
        let (t, _) = tree(10);
        let id = RecordId::of_payload(&4u64.to_le_bytes());
        let cp = Checkpoint::sign(&log, 10, &t.root(), 1_794_787_331_000);
        let receipt = Receipt {
            record_id: id,
            log_index: 4,
            inclusion_proof: t
                .inclusion_proof(4, 10)
                .unwrap()
                .iter()
                .map(hex::encode)
                .collect(),
            checkpoint: cp.clone(),
        };
        assert!(receipt.verify(log.public_key()));
        assert!(!receipt.verify(other.public_key()));
        let mut moved = receipt.clone();
        moved.log_index = 5;
        assert!(!moved.verify(log.public_key()));
        let mut grown = cp;
        grown.size = 11;
        assert!(!grown.verify(log.public_key()));
    }
}
