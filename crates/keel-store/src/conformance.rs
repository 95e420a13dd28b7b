//! The conformance suite: written once against `Store`, run against every backend.
