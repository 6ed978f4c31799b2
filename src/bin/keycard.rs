//! `keycard`: the operator command line (feature `cli`). See [`keycard::cli`] and the README.

fn main() -> std::process::ExitCode {
    keycard::cli::main()
}
