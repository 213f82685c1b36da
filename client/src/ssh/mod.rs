//! SSH transport (being written).
