//! `harness`: see `harness --help` and the README.

fn main() {
    std::process::exit(harness::cli::main());
}
