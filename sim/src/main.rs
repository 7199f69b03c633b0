//! `oar-sim`: seeded, deterministic simulations of an oar cluster under
//! faults. Build and run it through the cargo alias, which adds
//! `--cfg madsim` and keeps its own target directory:
//!
//! ```sh
//! cargo simrun -p oar-sim -- sweep --seeds 0..200
//! cargo simrun -p oar-sim -- run --seed 42 --trace trace.jsonl --history history.jsonl
//! ```

#[cfg(madsim)]
mod cli;

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    eprintln!("oar-sim runs only in the simulator build: cargo simrun -p oar-sim -- sweep");
    std::process::ExitCode::from(2)
}
