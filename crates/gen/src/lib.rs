//! A generator of realistic Sparkify data at any scale: song files in the real layout and
//! daily NDJSON event logs in eventsim's formats (user agents in literal quotes, `userId` as a
//! string, `""` for logged-out users, `registration` as a float, empty locations, numbers in
//! text fields). Deterministic for a seed: every file is generated from its own stream of
//! random numbers, so files can be written in parallel and still come out the same.
//!
//! ```no_run
//! use sparkify_gen::{GenOptions, generate};
//!
//! let opts = GenOptions {
//!     out: "/tmp/sparkify-data".into(),
//!     songs: 14896,
//!     days: 30,
//!     users: 100,
//!     events_per_day: 270,
//!     seed: 42,
//!     match_fraction: 0.05,
//!     gzip: false,
//! };
//! let report = generate(&opts)?;
//! println!("{} song files, {} events", report.song_files, report.events);
//! # Ok::<(), sparkify_gen::Error>(())
//! ```

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Duration};
use rayon::prelude::*;

/// What can go wrong generating: only writing the files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub out: PathBuf,
    pub songs: usize,
    pub days: usize,
    pub users: usize,
    pub events_per_day: usize,
    pub seed: u64,
    /// The fraction of plays whose song (title and artist) is in the song files.
    pub match_fraction: f64,
    pub gzip: bool,
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenReport {
    pub song_files: usize,
    pub log_files: usize,
    pub events: usize,
    pub plays: usize,
    pub bytes: u64,
}

/// SplitMix64's output function: a bijection of u64 that scatters nearby inputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64: small, fast, and the same on every platform and version.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    /// Stream `stream` of `seed`: it starts at a hashed point of the sequence. (Starting at
    /// `stream × step` made stream i+1 stream i one draw later, so songs drew the same ids:
    /// seed 42 wrote 14,114 files for 14,896 songs.)
    fn new(seed: u64, stream: u64) -> Self {
        Rng(mix(mix(seed) ^ stream))
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Skewed towards small numbers, like song popularity: a few songs get most plays.
    fn skewed(&mut self, n: usize) -> usize {
        let u = self.unit();
        ((n as f64) * u * u * u) as usize % n.max(1)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    fn id(&mut self, prefix: &str, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let mut s = String::with_capacity(prefix.len() + len);
        s.push_str(prefix);
        for _ in 0..len {
            s.push(ALPHABET[self.below(ALPHABET.len())] as char);
        }
        s
    }
}

const WORDS: &[&str] = &[
    "Love", "Night", "Heart", "Fire", "Rain", "Dance", "Blue", "Dream", "Road", "Time", "Light",
    "Home", "Gold", "River", "Summer", "Angel", "Shadow", "Train", "Midnight", "Wild", "Stone",
    "Moon", "Sky", "Ocean", "Ghost", "Radio", "City", "Paper", "Sugar", "Honey", "Thunder", "Echo",
    "Velvet", "Neon",
];
const FIRST: &[&str] = &[
    "Ann",
    "Jacob",
    "Kaylee",
    "Walter",
    "Lily",
    "Chloe",
    "Aleena",
    "Jacqueline",
    "Tegan",
    "Mohammad",
    "Ryan",
    "Sara",
    "Matthew",
    "Layla",
    "Jayden",
    "Ava",
    "Noah",
    "Emily",
    "Liam",
    "Olivia",
    "Björk",
];
const LAST: &[&str] = &[
    "Koch", "Klein", "Summers", "Frye", "Cuevas", "Lynch", "Kirby", "Levine", "Smith", "Jones",
    "Garcia", "Miller", "Davis", "Martinez", "Lopez", "Wilson", "Anderson", "Thomas", "Moore",
    "Jackson",
];
const PLACES: &[&str] = &[
    "San Francisco-Oakland-Hayward, CA",
    "Phoenix-Mesa-Scottsdale, AZ",
    "Lansing-East Lansing, MI",
    "Chicago-Naperville-Elgin, IL-IN-WI",
    "Atlanta-Sandy Springs-Roswell, GA",
    "Houston-The Woodlands-Sugar Land, TX",
    "New York-Newark-Jersey City, NY-NJ-PA",
    "Portland-South Portland, ME",
    "Tampa-St. Petersburg-Clearwater, FL",
];
const AGENTS: &[&str] = &[
    r#""Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/36.0.1985.143 Safari/537.36""#,
    r#""Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_4) AppleWebKit/537.77.4 (KHTML, like Gecko) Version/7.0.5 Safari/537.77.4""#,
    r#""Mozilla/5.0 (iPhone; CPU iPhone OS 7_1_2 like Mac OS X) AppleWebKit/537.51.2 (KHTML, like Gecko) Version/7.0 Mobile/11D257 Safari/9537.53""#,
    "Mozilla/5.0 (Windows NT 6.1; WOW64; rv:31.0) Gecko/20100101 Firefox/31.0",
    r#""Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Ubuntu Chromium/36.0.1985.125 Chrome/36.0.1985.125 Safari/537.36""#,
];
/// Pages other than NextSong, with weights out of 100 of the non-play events.
const PAGES: &[(&str, &str, usize)] = &[
    ("Home", "GET", 40),
    ("Logout", "PUT", 10),
    ("Login", "PUT", 8),
    ("Thumbs Up", "PUT", 15),
    ("Add to Playlist", "PUT", 8),
    ("Settings", "GET", 4),
    ("Help", "GET", 4),
    ("About", "GET", 3),
    ("Thumbs Down", "PUT", 4),
    ("Upgrade", "GET", 2),
    ("Downgrade", "GET", 2),
];

struct Song {
    song_id: String,
    title: String,
    /// A title written as a JSON number, as some real song files do.
    numeric_title: bool,
    artist: usize,
    duration: f64,
    year: i32,
}

struct Artist {
    id: String,
    name: String,
    location: String,
    lat_long: Option<(f64, f64)>,
}

fn catalogue(opts: &GenOptions) -> (Vec<Artist>, Vec<Song>) {
    let n_artists = (opts.songs * 2 / 3).max(1);
    let artists: Vec<Artist> = (0..n_artists)
        .into_par_iter()
        .map(|i| {
            let mut r = Rng::new(opts.seed, 1 << 40 | i as u64);
            let words = 1 + r.below(3);
            let mut name = (0..words)
                .map(|_| r.pick(WORDS))
                .collect::<Vec<_>>()
                .join(" ");
            name.push_str(&format!(" {i}"));
            let located = r.chance(0.55);
            Artist {
                id: r.id("AR", 16),
                name,
                location: if located {
                    r.pick(PLACES).to_owned()
                } else {
                    String::new()
                },
                lat_long: (located && r.chance(0.7))
                    .then(|| (r.unit() * 120.0 - 50.0, r.unit() * 300.0 - 150.0)),
            }
        })
        .collect();
    let songs = (0..opts.songs)
        .into_par_iter()
        .map(|i| {
            let mut r = Rng::new(opts.seed, 2 << 40 | i as u64);
            let numeric_title = r.chance(0.001);
            let title = if numeric_title {
                format!("{}.{}", 1 + r.below(9), 1 + r.below(9))
            } else {
                let words = 1 + r.below(4);
                let mut t = (0..words)
                    .map(|_| r.pick(WORDS))
                    .collect::<Vec<_>>()
                    .join(" ");
                t.push_str(&format!(" {i}"));
                t
            };
            Song {
                song_id: r.id("SO", 16),
                title,
                numeric_title,
                artist: r.below(n_artists),
                duration: 30.0 + (r.unit() * 570_000.0).round() / 1000.0,
                year: if r.chance(0.45) {
                    0
                } else {
                    1950 + r.below(61) as i32
                },
            }
        })
        .collect();
    (artists, songs)
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_file(path: &Path, data: &[u8], gzip: bool) -> Result<u64> {
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    if gzip {
        let path = PathBuf::from(format!("{}.gz", path.display()));
        let file = std::fs::File::create(&path).map_err(io)?;
        let mut enc = flate2::write::GzEncoder::new(
            std::io::BufWriter::new(file),
            flate2::Compression::fast(),
        );
        enc.write_all(data).map_err(io)?;
        enc.finish().map_err(io)?.flush().map_err(io)?;
        Ok(std::fs::metadata(&path).map_err(io)?.len())
    } else {
        std::fs::write(path, data).map_err(io)?;
        Ok(data.len() as u64)
    }
}

/// One song file's text: compact, keys sorted, no trailing newline, as the real files are.
fn song_json(song: &Song, artist: &Artist) -> String {
    let mut s = String::with_capacity(320);
    s.push_str("{\"artist_id\":");
    json_str(&mut s, &artist.id);
    match artist.lat_long {
        Some((lat, long)) => {
            let _ = write!(s, ",\"artist_latitude\":{lat:.5},\"artist_location\":");
            json_str(&mut s, &artist.location);
            let _ = write!(s, ",\"artist_longitude\":{long:.5}");
        }
        None => {
            s.push_str(",\"artist_latitude\":null,\"artist_location\":");
            json_str(&mut s, &artist.location);
            s.push_str(",\"artist_longitude\":null");
        }
    }
    s.push_str(",\"artist_name\":");
    json_str(&mut s, &artist.name);
    let _ = write!(
        s,
        ",\"duration\":{},\"num_songs\":1,\"song_id\":",
        song.duration
    );
    json_str(&mut s, &song.song_id);
    s.push_str(",\"title\":");
    if song.numeric_title {
        s.push_str(&song.title);
    } else {
        json_str(&mut s, &song.title);
    }
    let _ = write!(s, ",\"year\":{}}}", song.year);
    s
}

struct User {
    id: u32,
    first: &'static str,
    last: &'static str,
    gender: &'static str,
    location: &'static str,
    agent: &'static str,
    registration: i64,
    /// The day (0-based) the user upgrades to paid, if ever.
    upgrade_day: Option<usize>,
}

const START_MS: i64 = 1_541_030_400_000; // 2018-11-01T00:00:00Z

fn users(opts: &GenOptions) -> Vec<User> {
    (0..opts.users.max(1))
        .map(|i| {
            let mut r = Rng::new(opts.seed, 3 << 40 | i as u64);
            User {
                id: i as u32 + 2,
                first: FIRST[r.below(FIRST.len())],
                last: LAST[r.below(LAST.len())],
                gender: if r.chance(0.5) { "F" } else { "M" },
                location: PLACES[r.below(PLACES.len())],
                agent: AGENTS[r.below(AGENTS.len())],
                registration: START_MS - 86_400_000 * (1 + r.below(60) as i64)
                    + r.below(86_400_000) as i64,
                upgrade_day: match r.below(4) {
                    0 => Some(0),
                    1 => Some(r.below(opts.days.max(1) + 1)),
                    _ => None,
                },
            }
        })
        .collect()
}

/// One day of events as NDJSON (no trailing newline), and (events, plays) counts.
fn day_log(
    opts: &GenOptions,
    day: usize,
    users: &[User],
    artists: &[Artist],
    songs: &[Song],
) -> (String, usize, usize) {
    let mut r = Rng::new(opts.seed, 4 << 40 | day as u64);
    let mut out = String::with_capacity(opts.events_per_day * 480);
    let mut events = 0;
    let mut plays = 0;
    let day_start = START_MS + day as i64 * 86_400_000;
    // Session ids are unique across days: each day owns a block of them.
    let mut session = (day * opts.events_per_day.max(1)) as i64 + 1;
    let mut ts = day_start + r.below(600_000) as i64;
    while events < opts.events_per_day {
        let user = &users[r.skewed(users.len())];
        let logged_out = r.chance(0.03);
        let len = (1 + r.below(40)).min(opts.events_per_day - events);
        let level = match user.upgrade_day {
            Some(d) if d <= day => "paid",
            _ => "free",
        };
        for item in 0..len {
            if !out.is_empty() {
                out.push('\n');
            }
            let play = !logged_out && r.chance(0.82);
            let (page, method) = if logged_out {
                (if item == 0 { "Home" } else { "Login" }, "GET")
            } else if play {
                ("NextSong", "PUT")
            } else {
                let mut w = r.below(100);
                let mut chosen = PAGES[0];
                for p in PAGES {
                    if w < p.2 {
                        chosen = *p;
                        break;
                    }
                    w -= p.2;
                }
                (chosen.0, chosen.1)
            };
            let mut length = None;
            out.push_str("{\"artist\":");
            if play {
                plays += 1;
                let (artist, title, song_length) = if r.chance(opts.match_fraction) {
                    let song = &songs[r.skewed(songs.len())];
                    (
                        artists[song.artist].name.clone(),
                        song.title.clone(),
                        song.duration,
                    )
                } else {
                    // Songs outside the catalogue: names the catalogue never uses.
                    (
                        format!("Unsigned Band {}", r.below(50_000)),
                        format!("Demo Tape {}", r.below(200_000)),
                        60.0 + (r.unit() * 400_000.0).round() / 1000.0,
                    )
                };
                json_str(&mut out, &artist);
                out.push_str(",\"auth\":\"Logged In\"");
                length = Some(song_length);
                push_user(&mut out, user);
                finish_event(
                    &mut out,
                    item,
                    length,
                    level,
                    user,
                    page,
                    method,
                    session,
                    Some(&title),
                    ts,
                    false,
                );
            } else if logged_out {
                out.push_str("null,\"auth\":\"Logged Out\",\"firstName\":null,\"gender\":null");
                finish_event(
                    &mut out, item, None, level, user, page, method, session, None, ts, true,
                );
            } else {
                out.push_str("null,\"auth\":\"Logged In\"");
                push_user(&mut out, user);
                finish_event(
                    &mut out, item, None, level, user, page, method, session, None, ts, false,
                );
            }
            events += 1;
            ts += match length {
                Some(l) => (l * 1000.0) as i64,
                None => 1000 + r.below(60_000) as i64,
            };
        }
        session += 1;
        // Sessions of different users interleave in the real logs; here they follow one
        // another, wrapping inside the day.
        if ts > day_start + 86_000_000 {
            ts = day_start + r.below(600_000) as i64;
        }
    }
    (out, events, plays)
}

fn push_user(out: &mut String, user: &User) {
    out.push_str(",\"firstName\":");
    json_str(out, user.first);
    out.push_str(",\"gender\":");
    json_str(out, user.gender);
}

#[allow(clippy::too_many_arguments)] // one event's fields, written in key order
fn finish_event(
    out: &mut String,
    item: usize,
    length: Option<f64>,
    level: &str,
    user: &User,
    page: &str,
    method: &str,
    session: i64,
    song: Option<&str>,
    ts: i64,
    logged_out: bool,
) {
    let _ = write!(out, ",\"itemInSession\":{item},\"lastName\":");
    if logged_out {
        out.push_str("null");
    } else {
        json_str(out, user.last);
    }
    match length {
        Some(l) => {
            let _ = write!(out, ",\"length\":{l}");
        }
        None => out.push_str(",\"length\":null"),
    }
    let _ = write!(out, ",\"level\":\"{level}\",\"location\":");
    if logged_out {
        out.push_str("null");
    } else {
        json_str(out, user.location);
    }
    let _ = write!(out, ",\"method\":\"{method}\",\"page\":");
    json_str(out, page);
    if logged_out {
        out.push_str(",\"registration\":null");
    } else {
        let _ = write!(out, ",\"registration\":{}.0", user.registration);
    }
    let _ = write!(out, ",\"sessionId\":{session},\"song\":");
    match song {
        Some(s) => json_str(out, s),
        None => out.push_str("null"),
    }
    let status = if page == "Logout" { 307 } else { 200 };
    let _ = write!(out, ",\"status\":{status},\"ts\":{ts},\"userAgent\":");
    if logged_out {
        out.push_str("null,\"userId\":\"\"}");
    } else {
        json_str(out, user.agent);
        let _ = write!(out, ",\"userId\":\"{}\"}}", user.id);
    }
}

/// Writes `song_data/…` and `log_data/…` under `opts.out`.
pub fn generate(opts: &GenOptions) -> Result<GenReport> {
    let (artists, songs) = catalogue(opts);
    let song_bytes: u64 = songs
        .par_iter()
        .map(|song| {
            let id = format!("TR{}", &song.song_id[2..]);
            let path = opts
                .out
                .join("song_data")
                .join(&id[2..3])
                .join(&id[3..4])
                .join(&id[4..5])
                .join(format!("{id}.json"));
            write_file(
                &path,
                song_json(song, &artists[song.artist]).as_bytes(),
                opts.gzip,
            )
        })
        .sum::<Result<u64>>()?;
    let users = users(opts);
    let days: Vec<(u64, usize, usize)> = (0..opts.days)
        .into_par_iter()
        .map(|day| {
            let (text, events, plays) = day_log(opts, day, &users, &artists, &songs);
            let date = DateTime::from_timestamp_millis(START_MS).unwrap_or_default()
                + Duration::days(day as i64);
            let path = opts
                .out
                .join("log_data")
                .join(format!("{}", date.year()))
                .join(format!("{:02}", date.month()))
                .join(format!("{}-events.json", date.format("%Y-%m-%d")));
            Ok((
                write_file(&path, text.as_bytes(), opts.gzip)?,
                events,
                plays,
            ))
        })
        .collect::<Result<_>>()?;
    Ok(GenReport {
        song_files: songs.len(),
        log_files: days.len(),
        events: days.iter().map(|d| d.1).sum(),
        plays: days.iter().map(|d| d.2).sum(),
        bytes: song_bytes + days.iter().map(|d| d.0).sum::<u64>(),
    })
}
