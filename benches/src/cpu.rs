//! The CPU time a process has used, from `/proc/<pid>/stat`: how the benches turn a rate into
//! CPU per event or per request.

use anyhow::Context;

/// User + system CPU seconds a process has used so far.
pub fn seconds(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat(&stat).with_context(|| format!("reading {path}"))
}

/// User + system seconds from the text of a `stat` file.
pub fn parse_stat(stat: &str) -> anyhow::Result<f64> {
    // The fields after the command name, which is in parentheses and may hold spaces: utime and
    // stime are the 12th and 13th of them (14 and 15 of the whole line).
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("no command name")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let mut ticks = 0.0;
    for field in fields.get(11..13).context("a short stat line")? {
        ticks += field.parse::<f64>().with_context(|| format!("`{field}` is not a tick count"))?;
    }
    // USER_HZ, the unit of these ticks, is 100 on Linux.
    Ok(ticks / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_ticks_are_summed_past_a_command_name_with_spaces() {
        let stat = "4257 (tokio (rt) 1) S 1 4257 4257 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9";
        assert!((parse_stat(stat).unwrap() - 3.25).abs() < 1e-9);
        assert!(parse_stat("4257 (x) S 1 2").is_err());
        assert!(parse_stat("no name here").is_err());
    }

    #[test]
    fn this_process_s_cpu_time_grows_while_it_computes() {
        let before = seconds(std::process::id()).unwrap();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while seconds(std::process::id()).unwrap() <= before {
            assert!(started.elapsed() < std::time::Duration::from_secs(10), "no CPU time counted");
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
    }
}
