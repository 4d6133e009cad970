//! `vramroute-reporter` (skeleton; see the open issues).

fn main() {
    eprintln!("vramroute-reporter: not built yet");
    std::process::exit(2);
}
