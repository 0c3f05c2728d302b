//! The one loud line of a part of the suite that could not run here; included by each
//! private server's file, so that the benchmarks that include those files have it too.

/// Says once per test binary, past the test harness's capture (which hides what a
/// passing test prints), that a part of the suite did not run.
pub fn skipped(part: &str, why: &str) {
    use std::{
        collections::HashSet,
        io::Write,
        sync::{Mutex, OnceLock},
    };
    static SAID: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let said = SAID.get_or_init(Mutex::default);
    if said
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(part.to_owned())
    {
        let _ = writeln!(
            std::io::stderr(),
            "\n!!! SKIPPED: the {part} tests did not run: {why}. CI sets AGHANIM_REQUIRE_REDIS=1 and AGHANIM_REQUIRE_POSTGRES=1, which make this a failure.\n"
        );
    }
}
