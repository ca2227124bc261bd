//! `module-graph SRC...`: each module of the crates whose `src/` folders are given, with the
//! modules it imports, then any circles. Exits 1 when a crate's imports run in a circle.
//!
//!     cargo run -p earlyexit-testkit --bin module-graph -- core/src search/src

use std::path::Path;
use std::process::ExitCode;

use earlyexit_testkit::source::{Crate, ModulePath};

fn name(module: &ModulePath) -> String {
    if module.is_empty() {
        "crate".to_owned()
    } else {
        module.join("::")
    }
}

fn main() -> ExitCode {
    let dirs: Vec<String> = std::env::args().skip(1).collect();
    if dirs.is_empty() {
        eprintln!("usage: module-graph SRC... (for example core/src search/src)");
        return ExitCode::from(2);
    }
    let mut circles = 0;
    for dir in &dirs {
        let krate = match Crate::read(Path::new(dir)) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("module-graph: {dir}: {e}");
                return ExitCode::from(2);
            }
        };
        println!("{dir}");
        for (module, imports) in krate.imports() {
            let imports: Vec<String> = imports.iter().map(name).collect();
            println!("  {} -> {}", name(&module), imports.join(", "));
        }
        for circle in krate.circles() {
            circles += 1;
            let names: Vec<String> = circle.iter().map(name).collect();
            println!("  CIRCLE: {}", names.join(" <-> "));
        }
    }
    if circles > 0 {
        println!("{circles} circle(s)");
        ExitCode::FAILURE
    } else {
        println!("no circles");
        ExitCode::SUCCESS
    }
}
