//! `keycard`: the operator command line (feature `cli`). See [`keycard::cli`] and the README.

use std::process::ExitCode;

fn main() -> ExitCode {
    match keycard::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.code() == 0 => {
            println!("{}", e.message());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keycard: {}", e.message());
            ExitCode::from(e.code())
        }
    }
}
