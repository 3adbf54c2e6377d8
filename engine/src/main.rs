//! The `tidig` binary.

fn main() -> std::process::ExitCode {
    tidig_engine::cli::main()
}
