//! The `nexus` command.

fn main() -> std::process::ExitCode {
    nexus_marketplace::cli::main()
}
