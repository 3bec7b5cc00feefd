//! masrun: deploys and operates Matrix Authentication Service beside Synapse by running Rhai
//! task files against inventory hosts.

mod inventory;
mod vars;
mod yaml;

fn main() {
    println!("masrun");
}
