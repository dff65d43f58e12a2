//! Multi-process integration tests of raftmq; the tests live in `tests/`.
