//! The migrations are embedded (`embed_migrations!` in `src/db/mod.rs`); a new migration folder must
//! rebuild the server even when no Rust file changed.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
