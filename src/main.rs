//! The `gigo` command: every built-in stage.

fn main() -> std::process::ExitCode {
    gigo::cli::main_with(gigo::builtin_registry())
}
