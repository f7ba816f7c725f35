//! `ipmigw console replay FILE [--speed X]`: plays an asciicast v2
//! recording (the gateway's console recordings, or any other) in the
//! terminal: output events at their times (divided by the speed factor,
//! long pauses cut to the idle limit), markers as dim lines on stderr.
//!
//! The whole file is checked before anything is played, so a malformed
//! one is refused with FILE:LINE and nothing half-shown.
//!
//! Never does: play input events (they may hold what a person typed),
//! or wait longer than the idle limit between two events.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use crate::cli::CliError;

/// `console replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The recording (.cast, asciicast v2).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Playback speed factor (2 plays twice as fast).
    #[arg(long, default_value_t = 1.0, value_name = "X", value_parser = speed)]
    speed: f64,
    /// Longest pause between two events, in seconds of the recording
    /// (default: the file's idle_time_limit, else 2).
    #[arg(long, value_name = "SECONDS", value_parser = speed)]
    idle_limit: Option<f64>,
}

fn speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x <= 1e6 => Ok(x),
        _ => Err(format!("{s:?}: expected a number above 0")),
    }
}

/// Pause cap when neither the file nor the command line gives one.
const DEFAULT_IDLE_LIMIT: f64 = 2.0;

/// One event worth playing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// Terminal output.
    Output(String),
    /// A marker (attach, takeover, break, BMC events).
    Marker(String),
}

/// A checked recording.
#[derive(Debug, PartialEq)]
pub(crate) struct Recording {
    /// The header's idle_time_limit, if any.
    pub idle_time_limit: Option<f64>,
    /// Each event with its time in seconds from the start.
    pub events: Vec<(f64, Event)>,
}

/// Parses a whole asciicast v2 text; errors name `name:LINE`.
pub(crate) fn parse(name: &str, text: &str) -> Result<Recording, String> {
    let mut lines = text.lines().enumerate();
    let at = |i: usize, why: &str| format!("{name}:{}: {why}", i + 1);
    let (i, header) = lines
        .by_ref()
        .find(|(_, l)| !l.trim().is_empty())
        .ok_or_else(|| format!("{name}: empty file, not an asciicast recording"))?;
    let header: Value =
        serde_json::from_str(header).map_err(|e| at(i, &format!("header is not JSON: {e}")))?;
    if header["version"] != 2 {
        return Err(at(i, "not an asciicast v2 header (\"version\": 2 missing)"));
    }
    if !header["width"].is_u64() || !header["height"].is_u64() {
        return Err(at(i, "header lacks a numeric width and height"));
    }
    let idle_time_limit = header["idle_time_limit"].as_f64().filter(|x| *x > 0.0);
    let mut events = Vec::new();
    let mut last = 0.0;
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| at(i, &format!("event is not JSON: {e}")))?;
        let (Some(t), Some(code), Some(data)) = (v[0].as_f64(), v[1].as_str(), v[2].as_str())
        else {
            return Err(at(i, "expected an event [time, code, data]"));
        };
        if v.as_array().map(Vec::len) != Some(3) {
            return Err(at(i, "expected an event [time, code, data]"));
        }
        if !(t.is_finite() && t >= last) {
            return Err(at(i, &format!("time {t} goes back (previous {last})")));
        }
        last = t;
        match code {
            "o" => events.push((t, Event::Output(data.to_string()))),
            "m" => events.push((t, Event::Marker(data.to_string()))),
            // Input, resize and codes of later versions are not played.
            _ => {}
        }
    }
    Ok(Recording {
        idle_time_limit,
        events,
    })
}

/// The pause before each event: the gap since the previous one, capped
/// at `idle` seconds, divided by `speed`.
pub(crate) fn pauses(events: &[(f64, Event)], speed: f64, idle: f64) -> Vec<Duration> {
    let mut prev = 0.0;
    events
        .iter()
        .map(|(t, _)| {
            let gap = (t - prev).clamp(0.0, idle);
            prev = *t;
            Duration::from_secs_f64(gap / speed)
        })
        .collect()
}

/// Plays the file.
pub async fn run(a: ReplayArgs) -> Result<(), CliError> {
    let name = a.file.display().to_string();
    let bytes = std::fs::read(&a.file).map_err(|e| CliError::usage(format!("{name}: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| CliError::usage(format!("{name}: not UTF-8 text: {e}")))?;
    let rec = parse(&name, &text).map_err(CliError::usage)?;
    let idle = a
        .idle_limit
        .or(rec.idle_time_limit)
        .unwrap_or(DEFAULT_IDLE_LIMIT);
    let dim = std::io::stderr().is_terminal();
    for ((_, event), pause) in rec.events.iter().zip(pauses(&rec.events, a.speed, idle)) {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        match event {
            Event::Output(s) => {
                let mut out = std::io::stdout().lock();
                if out
                    .write_all(s.as_bytes())
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    return Ok(());
                }
            }
            Event::Marker(m) => {
                let mut err = std::io::stderr().lock();
                let _ = if dim {
                    write!(err, "\r\n\x1b[2m[{m}]\x1b[0m\r\n")
                } else {
                    writeln!(err, "[{m}]")
                };
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAST: &str = "{\"version\":2,\"width\":80,\"height\":24,\"idle_time_limit\":1.5}\n\
        [0.1,\"m\",\"attach alice write\"]\n\
        [0.2,\"o\",\"login: \"]\n\
        [0.25,\"i\",\"root\\r\"]\n\
        \n\
        [10.2,\"o\",\"Password: \"]\n\
        [10.3,\"r\",\"100x40\"]\n";

    #[test]
    fn output_and_markers_are_played_input_is_not() {
        let r = parse("x.cast", CAST).unwrap();
        assert_eq!(r.idle_time_limit, Some(1.5));
        assert_eq!(
            r.events,
            vec![
                (0.1, Event::Marker("attach alice write".into())),
                (0.2, Event::Output("login: ".into())),
                (10.2, Event::Output("Password: ".into())),
            ]
        );
    }

    #[test]
    fn pauses_follow_the_speed_and_the_idle_limit() {
        let r = parse("x.cast", CAST).unwrap();
        let ms = |v: Vec<Duration>| v.iter().map(|d| d.as_millis()).collect::<Vec<_>>();
        assert_eq!(ms(pauses(&r.events, 1.0, 1.5)), vec![100, 100, 1500]);
        assert_eq!(ms(pauses(&r.events, 2.0, 1.5)), vec![50, 50, 750]);
        assert_eq!(ms(pauses(&r.events, 1.0, 100.0)), vec![100, 100, 10_000]);
    }

    #[test]
    fn malformed_files_are_refused_with_file_and_line() {
        let cases = [
            ("", "x.cast: empty file"),
            ("not json\n", "x.cast:1: header is not JSON"),
            (
                "{\"version\":1,\"width\":80,\"height\":24}\n",
                "x.cast:1: not an asciicast v2",
            ),
            ("{\"version\":2}\n", "x.cast:1: header lacks"),
            (
                "{\"version\":2,\"width\":80,\"height\":24}\n[0.1,\"o\",\"a\"]\n[0.2,\"o\"\n",
                "x.cast:3: event is not JSON",
            ),
            (
                "{\"version\":2,\"width\":80,\"height\":24}\n\n[0.1,\"o\",7]\n",
                "x.cast:3: expected an event",
            ),
            (
                "{\"version\":2,\"width\":80,\"height\":24}\n[1,\"o\",\"a\",\"b\"]\n",
                "x.cast:2: expected an event",
            ),
            (
                "{\"version\":2,\"width\":80,\"height\":24}\n[1,\"o\",\"a\"]\n[0.5,\"o\",\"b\"]\n",
                "x.cast:3: time 0.5 goes back",
            ),
        ];
        for (text, want) in cases {
            let e = parse("x.cast", text).unwrap_err();
            assert!(e.starts_with(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn speeds_must_be_positive_numbers() {
        assert_eq!(speed("2"), Ok(2.0));
        assert_eq!(speed("0.5"), Ok(0.5));
        for bad in ["0", "-1", "nan", "inf", "fast"] {
            assert!(speed(bad).is_err(), "{bad}");
        }
    }
}
