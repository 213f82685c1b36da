//! Embedded SSH server (being written).
