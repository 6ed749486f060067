//! The web app is embedded into the binary (`rust-embed`, see `src/http.rs`). Its files reach cargo's
//! dependency tracking one by one, so a file added to `web/` would not rebuild the binary; watching the
//! folder does.
fn main() {
    println!("cargo:rerun-if-changed=../../web");
}
