//! TODO-S1: the riverchief-server command line.

pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
