//! Test support, compiled only with the `testkit` feature (the test suites and
//! `tidig bench` built with `--features testkit`): a throwaway PostgreSQL cluster, and the
//! fault hooks in `testkit_hooks`.

pub mod pgtemp;
