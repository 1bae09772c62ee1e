//! The `riverchief` command line; see [`riverchief_client::cli`].

fn main() -> std::process::ExitCode {
    riverchief_client::cli::main()
}
