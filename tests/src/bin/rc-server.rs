//! The server binary, rebuilt inside the test package so that the e2e tests can spawn and kill it.
fn main() -> std::process::ExitCode {
    riverchief_server::cli::main()
}
