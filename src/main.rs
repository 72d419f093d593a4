//! The `legacy-bridge` binary: all behaviour lives in the library; this only runs the CLI.

fn main() -> std::process::ExitCode {
    legacy_bridge::cli::main()
}
