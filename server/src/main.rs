fn main() -> std::process::ExitCode {
    riverchief_server::cli::main()
}
