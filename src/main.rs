//! The `kerasc` binary: the command line of [`kerasc::cli`].

fn main() {
    std::process::exit(kerasc::cli::main(std::env::args_os()));
}
