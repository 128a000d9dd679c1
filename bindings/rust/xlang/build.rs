//! Lets the shared library find libgms where the gms crate found it
//! (DEP_GMS_LIB_DIR comes from the crate's `links = "gms"`).
fn main() {
    if let Ok(dir) = std::env::var("DEP_GMS_LIB_DIR") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-rpath,{dir}");
    }
}
