//! ledger-writer
