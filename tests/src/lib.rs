//! The `remora-tests` package holds the end-to-end tests (`tests/e2e/`, one test binary with its
//! `support/` harness: a real OpenSSH sshd per test). This library target is empty on purpose;
//! cargo needs one target besides the tests.
