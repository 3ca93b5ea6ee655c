//! (skeleton: system tests live in tests/)
