//! RFC 6962 Merkle tree hashing, inclusion and consistency proofs, signed checkpoints, receipts. (Being built: issue 5.)
