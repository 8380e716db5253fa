//! See ARCHITECTURE.md. This crate is being built; see the open issues.
