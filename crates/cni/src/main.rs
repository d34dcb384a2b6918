//! `midonet-cni`: run by a container runtime with the CNI environment and
//! the network configuration on stdin; the result or error on stdout.

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut stdin = String::new();
    let env = cni::spec::Env::read(|k| std::env::var(k).ok());
    // VERSION may come with nothing on stdin.
    let _ = std::io::stdin().read_to_string(&mut stdin);
    let (out, ok) = cni::run(env, &stdin);
    if let Some(v) = out {
        println!("{v}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
