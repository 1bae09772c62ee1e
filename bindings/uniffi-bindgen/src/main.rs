//! `uniffi-bindgen generate --library target/debug/libriverchief_ffi.so --language kotlin ...`:
//! UniFFI's own generator, built here so that its version is the one the scaffolding was made with.

fn main() {
    uniffi::uniffi_bindgen_main()
}
