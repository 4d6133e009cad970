//! `vramroute-coordinator` (skeleton; see the open issues).

fn main() {
    eprintln!("vramroute-coordinator: not built yet");
    std::process::exit(2);
}
